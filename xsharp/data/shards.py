"""One shard: a block of rows in an uncompressed ``.npz`` file, written once and read back with
its SHA-256 checked against the manifest.

Rows of numbers are stored as they are (``x``: uint8 images, float32 waveforms or tables).
Text rows, and the string columns of a table, are UTF-8 bytes and end offsets, so no shard ever
needs pickle to be read (``allow_pickle=False``: a shard cannot run code).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xsharp.fileguard import DataError
from xsharp.files import write_atomic

from .manifest import ShardInfo


class ShardCorrupt(DataError):
    """A shard whose bytes are not the ones the manifest recorded: the job stops, naming it."""


@dataclass
class Rows:
    x: np.ndarray
    y: np.ndarray  # int64 class indices

    def __len__(self) -> int:
        return len(self.y)


def _strings(prefix: str, values) -> dict[str, np.ndarray]:
    encoded = [("" if v is None else str(v)).encode("utf-8") for v in values]
    ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
    missing = np.array([v is None for v in values], dtype=bool)
    return {f"{prefix}_utf8": np.frombuffer(b"".join(encoded), np.uint8), f"{prefix}_ends": ends, f"{prefix}_none": missing}


def _unstrings(arrays, prefix: str) -> np.ndarray:
    raw, ends, none = arrays[f"{prefix}_utf8"].tobytes(), arrays[f"{prefix}_ends"], arrays[f"{prefix}_none"]
    starts = np.concatenate([[0], ends[:-1]]) if len(ends) else ends
    out = np.empty(len(ends), dtype=object)
    for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
        out[i] = None if none[i] else raw[a:b].decode("utf-8")
    return out


def _is_number(v) -> bool:
    return v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool))


def encode(x: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays a shard stores for rows ``x`` (numbers, texts, or a table with string columns)."""
    if x.dtype != object:
        return {"x": x}
    if x.ndim == 1:
        return _strings("x", x)
    out: dict[str, np.ndarray] = {"x_columns": np.array([x.shape[1]], np.int64)}
    for j in range(x.shape[1]):
        column = x[:, j]
        if all(_is_number(v) for v in column):
            out[f"c{j}_num"] = np.array([np.nan if v is None else v for v in column], np.float64)
        else:
            out.update(_strings(f"c{j}", [None if (isinstance(v, float) and np.isnan(v)) else v for v in column]))
    return out


def decode(arrays) -> np.ndarray:
    if "x" in arrays:
        return arrays["x"]
    if "x_utf8" in arrays:
        return _unstrings(arrays, "x")
    columns = int(arrays["x_columns"][0])
    n = len(arrays["y"])
    out = np.empty((n, columns), dtype=object)
    for j in range(columns):
        if f"c{j}_num" in arrays:
            out[:, j] = arrays[f"c{j}_num"].tolist()
        else:
            out[:, j] = _unstrings(arrays, f"c{j}")
    return out


def write_shard(folder: Path, split: str, index: int, x: np.ndarray, y: np.ndarray) -> ShardInfo:
    """Write rows as ``shards/{split}-{index:05d}.npz`` under ``folder``; its ShardInfo."""
    buf = io.BytesIO()
    np.savez(buf, y=np.asarray(y, np.int64), **encode(x))
    data = buf.getvalue()
    name = f"shards/{split}-{index:05d}.npz"
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return ShardInfo(split, name, int(len(y)), len(data), hashlib.sha256(data).hexdigest())


def read_shard(folder: Path, info: ShardInfo, where: str = "dataset") -> Rows:
    """The shard's rows, after checking its bytes against the manifest's SHA-256."""
    path = Path(folder) / info.file
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ShardCorrupt(f"{where}: shard {info.file} cannot be read ({e.strerror})") from None
    if len(data) != info.bytes or hashlib.sha256(data).hexdigest() != info.sha256:
        raise ShardCorrupt(f"{where}: shard {info.file} fails its checksum (its bytes are not the ones the import wrote); import the dataset again")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        rows = Rows(decode(arrays), arrays["y"])
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as e:
        raise ShardCorrupt(f"{where}: shard {info.file} is not a readable shard ({type(e).__name__})") from None
    if len(rows.x) != info.rows or len(rows.y) != info.rows:
        raise ShardCorrupt(f"{where}: shard {info.file} holds {len(rows.y)} rows, the manifest says {info.rows}")
    return rows
