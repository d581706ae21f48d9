"""The datasets that come by name (``dataset: digits``): scikit-learn's digits, Fashion-MNIST
from Debian's package, and the Rotten Tomatoes snippets shipped with xsharp. Add one to ``NAMED``."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from xsharp.fileguard import DataError

from .arrays import Arrays
from .csv_text import read_csv_text
from .idx import read_idx_arrays


def _digits(**_: Any) -> Arrays:
    # scikit-learn's copy of the UCI digits, read straight from its file: importing
    # sklearn.datasets costs most of a second, which every trial runner and worker would pay.
    # XSHARP_DIGITS_CSV names that file elsewhere: a machine without scikit-learn (the GPU check).
    path = os.environ.get("XSHARP_DIGITS_CSV")
    if not path:
        spec = importlib.util.find_spec("sklearn")
        if spec is None or not spec.submodule_search_locations:
            raise DataError("dataset 'digits' comes with scikit-learn, which is not installed: pip install scikit-learn")
        path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",")
    x = (table[:, :-1].reshape(-1, 8, 8) / 16.0).astype(np.float32)  # 8x8 grey levels 0..16 -> [0, 1]
    return Arrays(x, table[:, -1].astype(np.int64), classes=[str(c) for c in range(10)])


FASHION_MNIST_DIR = Path(
    os.environ.get("XSHARP_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"
)  # another place: a machine without the package (the GPU check)
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _fashion_mnist(**_: Any) -> Arrays:
    """Zalando's Fashion-MNIST, 60,000 train and 10,000 test 28x28 images, from Debian's
    ``dataset-fashion-mnist`` (scripts/system-deps.sh installs it)."""
    if not FASHION_MNIST_DIR.is_dir():
        raise DataError(f"{FASHION_MNIST_DIR}: not here; install Debian's dataset-fashion-mnist (scripts/system-deps.sh)")
    arrays = read_idx_arrays(FASHION_MNIST_DIR)
    arrays.classes = list(FASHION_MNIST_CLASSES)
    return arrays


ROTTEN_TOMATOES = Path(__file__).parent.parent / "algos" / "data" / "rotten_tomatoes.csv.bz2"  # shipped as package data of xsharp.algos


def _rotten_tomatoes(**_: Any) -> Arrays:
    """13,905 Rotten Tomatoes snippets labelled fresh, rotten or plot (text), shipped with xsharp
    (xsharp/algos/data/README.md: source and licence). Its rows are strings: the spec's
    ``features`` (tfidf, bow, word2vec) turn them into numbers."""
    return read_csv_text(ROTTEN_TOMATOES, label_column="category", text_column="text")


NAMED: dict[str, Callable[..., Arrays]] = {"digits": _digits, "fashion-mnist": _fashion_mnist, "rotten-tomatoes": _rotten_tomatoes}
