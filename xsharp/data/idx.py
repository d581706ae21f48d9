"""IDX files (the MNIST format, optionally gzipped), and the ``idx`` format: an images file with
its labels file beside it, or a folder of MNIST's four files."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from xsharp.fileguard import ANYWHERE, DataError, FileGuard

from .arrays import Arrays
from .source_files import open_source, why

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path, guard: FileGuard = ANYWHERE, field: str = "data.path") -> np.ndarray:
    """Any IDX file (the MNIST format, optionally gzipped) as an array of its stored type.

    Header: two zero bytes, a type code, the number of dimensions, then each dimension as a
    big-endian int32; the data follow in C order.
    """
    path = Path(path)
    try:
        with open_source(path, guard, field) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
                raise DataError(f"{path}: not an IDX file (its first 4 bytes are not an IDX header)")
            ndim = head[3]
            dims = struct.unpack(f">{ndim}i", f.read(4 * ndim))
            dtype = np.dtype(_IDX_TYPES[head[2]])
            need = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize  # before reading: the header may lie
            if min(dims, default=1) < 0 or (guard.max_file_bytes is not None and need > guard.max_file_bytes):
                raise DataError(f"{path}: header says {dims}, {need} bytes of data, over this server's cap of {guard.max_file_bytes} bytes a file")
            raw = f.read(need)
    except (OSError, EOFError, struct.error) as e:
        raise DataError(f"{path}: not a readable IDX file ({why(e)})") from None
    if len(raw) < need:
        raise DataError(f"{path}: header says {dims} ({need} bytes of data) but the file holds {len(raw)}")
    return np.frombuffer(raw[:need], dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_images(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0  # grey levels 0..255 -> [0, 1]
    return images.astype(np.float32)


def _labels_file(images: Path) -> Path | None:
    """MNIST naming: ``train-images-idx3-ubyte[.gz]`` has ``train-labels-idx1-ubyte[.gz]`` beside it."""
    if "images-idx3" not in images.name:
        return None
    name = images.name.replace("images-idx3", "labels-idx1")
    for candidate in (images.with_name(name), images.with_name(name.removesuffix(".gz")), images.with_name(name + ".gz")):
        if candidate.exists():
            return candidate
    return None


def _idx_pair(images: Path, labels: Path | None, guard: FileGuard) -> tuple[np.ndarray, np.ndarray]:
    labels = labels or _labels_file(images)
    if labels is None:
        raise DataError(f"{images}: no labels file beside it (MNIST naming: *-labels-idx1-ubyte); set data.labels")
    x, y = read_idx(images, guard), read_idx(labels, guard, "data.labels")
    if y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise DataError(f"{images}: {x.shape[0]} samples but {labels.name} holds labels of shape {y.shape}")
    return _idx_images(x), y.astype(np.int64)


def read_idx_arrays(path: Path, labels: str | None = None, guard: FileGuard = ANYWHERE, **_: Any) -> Arrays:
    """An IDX images file (labels beside it, or ``labels``), or a folder holding MNIST's four files
    (``train-*`` and ``t10k-*``/``test-*``: the folder's own train/test split)."""
    if path.is_dir():
        found = {}
        for part, prefixes in (("train", ("train",)), ("test", ("t10k", "test"))):
            for prefix in prefixes:
                hits = sorted(path.glob(f"{prefix}-images-idx3-ubyte*"))
                if hits:
                    found[part] = hits[0]
                    break
        if "train" not in found:
            raise DataError(f"{path}: no train-images-idx3-ubyte[.gz] in this folder")
        x, y = _idx_pair(found["train"], None, guard)
        if "test" not in found:
            return Arrays(x, y)
        x_test, y_test = _idx_pair(found["test"], None, guard)
        return Arrays(x, y, x_test, y_test)
    return Arrays(*_idx_pair(path, guard.check(labels, "data.labels") if labels else None, guard))
