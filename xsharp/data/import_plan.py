"""What an import is asked for and what it hands the manifest: its options, its progress reports,
the rows of each split, the rows a shard holds, and the content hash of a source file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xsharp.fileguard import FileGuard

from .manifest import SPLITS, ShardInfo
from .splits import split_rows

MiB = 1 << 20


@dataclass
class ImportOptions:
    format: str | None = None  # images | audio | table | text | any datasets.FORMATS name; None: from the path
    size: tuple[int, int] | None = None  # images: (H, W)
    resize: str = "squash"  # images: squash | crop | fill
    channels: int = 3  # images: 1 or 3
    sample_rate: int | None = None  # audio
    duration: float | None = None  # audio
    label_column: str | None = None  # tables, text
    text_column: str | None = None  # text
    feature_columns: list[str] | None = None  # tables
    shard_mb: float = 16.0
    skip_bad: bool = False
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    seed: int = 0

    def reader_options(self) -> dict:
        keys = {
            "images": ("size", "resize", "channels"),
            "audio": ("sample_rate", "duration"),
            "table": ("label_column", "feature_columns"),
            "text": ("label_column", "text_column"),
        }
        return {k: getattr(self, k) for k in keys.get(self.format or "", ()) if getattr(self, k) is not None}


@dataclass
class ImportProgress:
    done: int
    total: int  # 0: not known yet (a table read as a stream)
    unit: str  # "files" or "rows"


@dataclass
class BuiltImport:
    """What the readers of one kind hand to the manifest."""

    kind: str
    classes: list[str]
    counts: dict[str, list[int]]
    shape: list[int]
    dtype: str
    shards: list[ShardInfo]
    source_sha256: str
    files: int
    skipped: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


def assign_splits(labels: np.ndarray, given: np.ndarray | None, options: ImportOptions) -> dict[str, np.ndarray]:
    """Row indices of each split: the source's own (val taken from train when it has none), or
    a seeded stratified split, the one ``datasets.load`` makes for the same rows and seed."""
    idx = np.arange(len(labels))
    if given is not None:
        parts = {s: idx[given == s] for s in SPLITS}
    else:
        idx = np.random.default_rng(options.seed).permutation(len(labels))  # as datasets.load orders rows before it splits
        train, _, test, _ = split_rows(idx, labels[idx], options.test_fraction, options.seed)
        parts = {"train": train, "val": idx[:0], "test": test}
    if len(parts["val"]) == 0 and options.validation_fraction > 0 and len(parts["train"]) > 1:
        train, _, val, _ = split_rows(parts["train"], labels[parts["train"]], options.validation_fraction, options.seed + 1)
        parts["train"], parts["val"] = train, val
    rng = np.random.default_rng(options.seed)
    return {s: rows[rng.permutation(len(rows))] for s, rows in parts.items()}  # shards mix the classes


def shard_rows(row_bytes: int, shard_mb: float) -> int:
    """Rows of ``row_bytes`` each in a shard of ``shard_mb`` MiB (at least one)."""
    return max(1, int(shard_mb * MiB // max(row_bytes, 1)))


def file_hash(path: Path, guard: FileGuard) -> str:
    """SHA-256 of a file's bytes, read through ``guard`` a MiB at a time."""
    h = hashlib.sha256()
    with guard.open(path) as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()
