#!/usr/bin/env python3
"""Fashion-MNIST from Debian's IDX files as a folder of class folders of images.

    .venv/bin/python scripts/fashion_mnist_pngs.py OUT [--limit N] [--jpeg] [--workers N]

writes ``OUT/train/<class>/<i>.png`` and ``OUT/test/<class>/<i>.png``: 8-bit grey PNGs, lossless,
so an import with ``--channels 1`` gives back the IDX files' bytes exactly. ``<i>`` is the row's
index in its IDX file. Class folders are named as ``xsharp.algos.datasets.FASHION_MNIST_CLASSES``,
made safe for a file system ("T-shirt/top" -> "T-shirt_top", "Ankle boot" -> "Ankle_boot"); their
sorted order is not the IDX label order, so a model trained on the folder numbers the classes
differently (its accuracy is the same).

``--limit N``: the first N rows of each split (train and test). ``--jpeg``: JPEGs (quality 95)
instead, for the decode bench (lossy: not for accuracy comparisons). Encoding runs on a process
pool (``--workers``, default every core). Source: ``/usr/share/datasets/fashion-mnist``
(``apt-get install dataset-fashion-mnist``), or ``--idx DIR``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import struct
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

IDX_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"), "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CHUNK = 2000  # images one pool task writes


def class_names() -> list[str]:
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from xsharp.algos.datasets import FASHION_MNIST_CLASSES

        names = list(FASHION_MNIST_CLASSES)
    except ImportError:  # the script runs without xsharp installed too
        names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    return [safe(n) for n in names]


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise SystemExit(f"{path}: not an IDX file of unsigned bytes")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _write(job: tuple) -> int:
    from PIL import Image

    folder, first, images, labels, names, jpeg, side = job
    for k, (img, label) in enumerate(zip(images, labels)):
        path = Path(folder) / names[int(label)] / f"{first + k}.{'jpg' if jpeg else 'png'}"
        im = Image.fromarray(img, mode="L")
        if side:  # photo-sized: enlarged, in colour (a tint per class), as a camera would give it
            c = int(label)
            tint = np.array([(37 * c) % 256, (91 * c) % 256, (173 * c) % 256], np.uint16)
            rgb = (np.asarray(im.resize((side, side), Image.BICUBIC), np.uint16)[..., None] * (tint + 64) // 320).astype(np.uint8)
            im = Image.fromarray(rgb, mode="RGB")
        if jpeg:
            im.save(path, "JPEG", quality=95)
        else:
            im.save(path, "PNG", compress_level=6)
    return len(labels)


def write_tree(
    out: Path, idx_dir: Path = IDX_DIR, limit: int | None = None, jpeg: bool = False, workers: int | None = None, side: int | None = None
) -> dict[str, int]:
    """Write the tree; the images written per split."""
    names = class_names()
    jobs, written = [], {}
    for split, (img_file, lab_file) in FILES.items():
        images, labels = read_idx(idx_dir / img_file), read_idx(idx_dir / lab_file)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        for n in names:
            (out / split / n).mkdir(parents=True, exist_ok=True)
        for lo in range(0, len(labels), CHUNK):
            jobs.append((str(out / split), lo, images[lo : lo + CHUNK], labels[lo : lo + CHUNK], names, jpeg, side))
        written[split] = len(labels)
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        sum(pool.map(_write, jobs))
    return written


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--limit", type=int, default=None, help="the first N rows of each split")
    p.add_argument("--jpeg", action="store_true", help="JPEG (quality 95) instead of PNG")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--side", type=int, default=None, help="enlarge each image to SIDE x SIDE pixels, in colour (photo-sized inputs for the import bench)")
    p.add_argument("--idx", type=Path, default=IDX_DIR, help=f"the IDX files' folder (default {IDX_DIR})")
    a = p.parse_args(argv)
    if not (a.idx / FILES["train"][0]).is_file():
        raise SystemExit(f"{a.idx}: no Fashion-MNIST IDX files; apt-get install dataset-fashion-mnist")
    t = time.perf_counter()
    written = write_tree(a.out, a.idx, a.limit, a.jpeg, a.workers, a.side)
    print(f"{a.out}: {written['train']:,} train + {written['test']:,} test {'JPEG' if a.jpeg else 'PNG'} images in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
