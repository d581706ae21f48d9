"""Any other source imported: what ``datasets.load`` reads (``.npz``, IDX, WAV folders, a bundled
set) loaded whole with its split, then cut into shards; grey levels stored as bytes when exact."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from xsharp.fileguard import FileGuard

from .dataset import load
from .import_plan import BuiltImport, ImportOptions, ImportProgress, file_hash, shard_rows
from .shards import write_shard


def _uint8_if_exact(x: np.ndarray) -> np.ndarray:
    """Grey levels read as float32 / 255 are stored as the bytes they came from (4x smaller),
    when that gives back exactly the same floats."""
    if x.dtype != np.float32 or x.size == 0 or x.min() < 0 or x.max() > 1:
        return x
    u = np.rint(x * 255.0).astype(np.uint8)
    return u if np.array_equal(u.astype(np.float32) / 255.0, x) else x


def import_arrays(source: Any, fmt: str | None, options: ImportOptions, staging: Path, guard: FileGuard, say: Callable[[ImportProgress], None]) -> BuiltImport:
    extra: dict[str, Any] = {k: getattr(options, k) for k in ("sample_rate", "duration", "label_column", "text_column") if getattr(options, k) is not None}
    if fmt is None:
        data = load(source, test_fraction=options.test_fraction, validation_fraction=options.validation_fraction, seed=options.seed, **extra)
        source_hash = hashlib.sha256(f"bundled:{source}".encode()).hexdigest()
    else:
        data = load(
            path=source,
            format=fmt,
            test_fraction=options.test_fraction,
            validation_fraction=options.validation_fraction,
            seed=options.seed,
            guard=guard,
            **extra,
        )
        source_hash = file_hash(source, guard) if Path(source).is_file() else hashlib.sha256(str(source).encode()).hexdigest()
    splits = {"train": (data.x_train, data.y_train), "val": (data.x_val, data.y_val), "test": (data.x_test, data.y_test)}
    stored = {s: (_uint8_if_exact(x), y) for s, (x, y) in splits.items()}
    uint8 = all(x.dtype == np.uint8 or len(x) == 0 for x, _ in stored.values())
    if not uint8:
        stored = splits
    x0 = stored["train"][0]
    per_shard = shard_rows(max(1, x0[:1].nbytes), options.shard_mb)
    shards, total, done = [], sum(len(y) for _, y in splits.values()), 0
    for split, (x, y) in stored.items():
        for k in range(math.ceil(len(y) / per_shard)):
            part = slice(k * per_shard, (k + 1) * per_shard)
            shards.append(write_shard(staging, split, k, x[part], y[part]))
            done += len(y[part])
            say(ImportProgress(done, total, "rows"))
    counts = {s: np.bincount(y, minlength=data.n_classes).tolist() for s, (_, y) in splits.items()}
    kind = "text" if x0.dtype == object else "arrays"
    return BuiltImport(kind, list(data.classes), counts, list(x0.shape[1:]), "uint8" if uint8 else str(x0.dtype), shards, source_hash, 1)
