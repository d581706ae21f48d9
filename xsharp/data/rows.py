"""Raw rows to predict on or to check an export with: a trained model's own split of the data it
was trained on (read as training read it, from its saved spec), or every row of any file or
imported dataset xsharp reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class RawRows:
    x: np.ndarray
    y: np.ndarray | None  # labels, when the source has them
    source: str  # what was read, in words


_READER_OPTIONS = ("labels", "sample_rate", "duration", "label_column", "text_column", "size", "resize", "channels", "feature_columns")


def _same_file(a: str, b: str | None) -> bool:
    return b is not None and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def load_rows(data: str, split: str, saved_spec: dict | None) -> RawRows:
    """Raw rows (and labels when known): the training data's own split when ``data`` names the
    training source, otherwise every row of a file in any data format xsharp reads."""
    from xsharp.algos import datasets

    d = (saved_spec or {}).get("data", {})
    reader = {k: d.get(k) for k in _READER_OPTIONS}
    if data in datasets.NAMED or _same_file(data, d.get("path")):
        named = data in datasets.NAMED
        ds = datasets.load(
            data if named else None,
            None if named else data,
            None if named else d.get("format"),
            test_fraction=d.get("test_fraction", 0.2),
            validation_fraction=d.get("validation_fraction", 0.1),
            limit=d.get("limit"),
            seed=(saved_spec or {}).get("seed", 0),
            test_speakers=None if named else d.get("test_speakers"),
            **reader,
        )
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        return RawRows(x, y, f"{data} ({split} split, same split as training)")
    path = Path(data).expanduser()
    from xsharp.data.catalog import DatasetRef

    if not path.exists() and DatasetRef.looks_like(data):  # an imported dataset: its split, as stored
        return _imported_rows(data, split)
    if not path.exists():
        raise datasets.DataError(f"{data}: neither a dataset name ({', '.join(datasets.NAMED)}) nor an existing file")
    if path.suffix == ".npy":
        return RawRows(np.load(path, allow_pickle=False), None, str(path))
    fmt = datasets.format_of(path)
    if fmt is not None and fmt != "npz":  # every row of an IDX file, WAV folder or CSV
        arrays = datasets.FORMATS[fmt](path, **{k: v for k, v in reader.items() if v is not None})
        if split == "test" and arrays.x_test is not None:
            return RawRows(arrays.x_test, arrays.y_test, f"{path} [test]")
        return RawRows(arrays.x, arrays.y, str(path))
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise datasets.DataError(f"{path}: not a readable .npz/.npy file ({e})") from None
    for xk, yk in (("x", "y"), (f"x_{split}", f"y_{split}")):
        if xk in arrays:
            return RawRows(arrays[xk], arrays.get(yk), f"{path} [{xk}]")
    raise datasets.DataError(f"{path}: expected an array x (or x_{split}); found {sorted(arrays)}")


def _imported_rows(ref: str, split: str) -> RawRows:
    from xsharp.data.catalog import Catalog, local_owner
    from xsharp.data.stream import ShardedSplit
    from xsharp.fileguard import DataError

    catalog = Catalog.local()
    m = catalog.find(ref, local_owner())
    parts = list(ShardedSplit(catalog.path_of(m), m, split))
    if not parts:
        raise DataError(f"{m.ref}: no {split} rows")
    return RawRows(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]), f"{m.ref} ({split} split)")
