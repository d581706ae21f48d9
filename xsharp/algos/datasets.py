"""Datasets by name (``dataset: digits``) or by path and format (``path: x.npz``).

Loaders return arrays; :func:`load` splits them into train / validation / test with a seeded,
stratified split, so every worker and every rerun sees the same rows.
Add a named dataset to ``NAMED`` and a file format to ``FORMATS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


class DataError(ValueError):
    """The data a spec points at is missing or malformed (a user error, not a crash)."""


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str] = field(default_factory=list)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name}: {len(self.y_train)} train, {len(self.y_val)} val, {len(self.y_test)} test, "
            f"shape {self.in_shape}, {self.n_classes} classes)"
        )


@dataclass
class Arrays:
    """What a loader returns: all rows (x, y) or, when the source splits them, train and test."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    classes: list[str] | None = None


def _digits(**_: Any) -> Arrays:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)  # 8x8 grey levels 0..16 -> [0, 1]
    return Arrays(x, d.target.astype(np.int64), classes=[str(c) for c in d.target_names])


NAMED: dict[str, Callable[..., Arrays]] = {"digits": _digits}


def _npz(path: Path, **_: Any) -> Arrays:
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    classes = [str(c) for c in data["classes"]] if "classes" in data else None
    if "x_train" in data:
        missing = [k for k in ("y_train", "x_test", "y_test") if k not in data]
        if missing:
            raise DataError(f"{path}: has x_train but lacks {', '.join(missing)}")
        return Arrays(data["x_train"], data["y_train"], data["x_test"], data["y_test"], classes)
    if "x" in data and "y" in data:
        return Arrays(data["x"], data["y"], classes=classes)
    raise DataError(f"{path}: expected arrays x and y (or x_train, y_train, x_test, y_test); found {sorted(data)}")


FORMATS: dict[str, Callable[..., Arrays]] = {"npz": _npz}


def format_of(path: str | Path) -> str | None:
    suffix = Path(path).suffix.lstrip(".").lower()
    return suffix if suffix in FORMATS else None


def _labels(y: np.ndarray, classes: list[str] | None, where: str) -> tuple[np.ndarray, list[str]]:
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be one-dimensional, got shape {y.shape}")
    if classes is None:
        values = np.unique(y)
        if np.issubdtype(y.dtype, np.integer) and values.size and values.min() >= 0 and values.max() < 10_000:
            classes = [str(i) for i in range(int(values.max()) + 1)]
            return y.astype(np.int64), classes
        classes = [str(v) for v in values]
        return np.searchsorted(values, y).astype(np.int64), classes
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise DataError(f"{where}: labels must lie in 0..{len(classes) - 1}")
    return y.astype(np.int64), classes


def _split(x, y, fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    if fraction <= 0:
        return x, y, x[:0], y[:0]
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    try:
        a_x, b_x, a_y, b_y = train_test_split(x, y, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError as e:  # too few rows for the fraction, or fewer rows than classes
        raise DataError(f"cannot hold out {fraction:g} of {len(y)} rows: {e}") from None
    return a_x, a_y, b_x, b_y


def load(
    dataset: str | None = None,
    path: str | Path | None = None,
    format: str | None = None,
    *,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    limit: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Load a dataset by name or by path and split it reproducibly.

    ``test_fraction`` applies only when the source has no test split of its own;
    ``validation_fraction`` is taken from the training rows; ``limit`` keeps the first rows
    of a seeded shuffle (handy for quick runs).
    """
    if (dataset is None) == (path is None):
        raise DataError("give exactly one of dataset (a name) or path (a file)")
    if dataset is not None:
        if dataset not in NAMED:
            raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(NAMED))}")
        arrays, name = NAMED[dataset](), dataset
    else:
        p = Path(path).expanduser()
        if not p.exists():
            raise DataError(f"{p}: no such file or directory")
        fmt = format or format_of(p)
        if fmt not in FORMATS:
            raise DataError(f"{p}: cannot tell the format; set data.format to one of {', '.join(sorted(FORMATS))}")
        arrays, name = FORMATS[fmt](p), p.name

    y, classes = _labels(arrays.y, arrays.classes, name)
    x = np.asarray(arrays.x, dtype=np.float32)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{name}: {x.shape[0]} samples but {y.shape[0]} labels")
    order = np.random.default_rng(seed).permutation(len(y))
    if limit is not None:
        order = order[:limit]
    x, y = x[order], y[order]
    if arrays.x_test is not None:
        x_test = np.asarray(arrays.x_test, dtype=np.float32)
        y_test, _ = _labels(arrays.y_test, classes, name)
    else:
        x, y, x_test, y_test = _split(x, y, test_fraction, seed)
    x_train, y_train, x_val, y_val = _split(x, y, validation_fraction, seed + 1)
    return Dataset(name, x_train, y_train, x_val, y_val, x_test, y_test, classes)
