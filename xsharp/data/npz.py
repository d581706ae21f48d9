"""The ``npz`` format: NumPy's ``.npz`` with arrays ``x`` and ``y`` (or ``x_train``, ``y_train``,
``x_test``, ``y_test``), and optionally ``classes``. Sizes are read from the headers before any
array is, and arrays of Python objects (pickles) are never read."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from xsharp.fileguard import ANYWHERE, DataError, FileGuard

from .arrays import Arrays
from .source_files import why

_NPZ_ARRAYS = ("x", "y", "x_train", "y_train", "x_test", "y_test", "classes")


def _npz_sizes(zipped: Any, path: Path) -> dict[str, int]:
    """{array name: bytes once read} of each ``.npy`` member of an open ``ZipFile``, from its
    header alone: nothing is decompressed past it. Arrays of Python objects are refused."""
    sizes = {}
    for name in zipped.namelist():
        if not name.endswith(".npy"):
            continue
        with zipped.open(name) as member:
            version = np.lib.format.read_magic(member)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise DataError(f"{path}: array {name[:-4]!r} is in .npy format version {version}, which is not read")
            shape, _, dtype = read_header(member)
        if dtype.hasobject:
            raise DataError(f"{path}: array {name[:-4]!r} holds Python objects (pickles), which are never read; save numbers or strings")
        sizes[name[:-4]] = math.prod(shape) * dtype.itemsize
    return sizes


def read_npz_arrays(path: Path, guard: FileGuard = ANYWHERE, **_: Any) -> Arrays:
    try:
        with guard.open(path) as raw:
            with zipfile.ZipFile(raw) as zipped:  # headers first: 500 KB of .npz may hold GBs of zeros
                sizes = _npz_sizes(zipped, path)
            wanted = [k for k in _NPZ_ARRAYS if k in sizes]
            total = sum(sizes[k] for k in wanted)
            if guard.max_file_bytes is not None and total > guard.max_file_bytes:
                raise DataError(f"{path}: its arrays come to {total} bytes once decompressed, over this server's cap of {guard.max_file_bytes} bytes a file")
            raw.seek(0)
            with np.load(raw, allow_pickle=False) as f:
                data = {k: f[k] for k in wanted}
            others = len(sizes) - len(wanted)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: not a readable .npz file ({why(e)})") from None
    classes = [str(c) for c in data["classes"]] if "classes" in data else None
    if "x_train" in data:
        missing = [k for k in ("y_train", "x_test", "y_test") if k not in data]
        if missing:
            raise DataError(f"{path}: has x_train but lacks {', '.join(missing)}")
        return Arrays(data["x_train"], data["y_train"], data["x_test"], data["y_test"], classes)
    if "x" in data and "y" in data:
        return Arrays(data["x"], data["y"], classes=classes)
    raise DataError(f"{path}: expected arrays x and y (or x_train, y_train, x_test, y_test); found {others + len(data)} other array(s)")
