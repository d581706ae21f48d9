"""A table or text file imported in one sequential pass: row chunks labelled as they stream by,
each row's split a seeded draw keyed by its place, rows cut into shards by bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from xsharp.fileguard import DataError, FileGuard

from .arrays import MAX_CLASS_NAME, MAX_CLASSES
from .import_plan import BuiltImport, ImportOptions, ImportProgress, MiB, file_hash
from .manifest import SPLITS, ShardInfo
from .shards import write_shard
from .tables import _TableReader
from .text import iter_text


class LabelIndex:
    """Label values to class indices as rows stream by: non-negative integers are their own
    index; other values are numbered in order of first appearance."""

    def __init__(self, where: str):
        self.where, self.names, self.index, self.integers = where, [], {}, None

    def __call__(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        integers = np.issubdtype(values.dtype, np.integer) and (values.size == 0 or values.min() >= 0)
        if self.integers is None and values.size:
            self.integers = bool(integers)
        if self.integers:
            if not integers:
                raise DataError(f"{self.where}: the label column mixes integer and other values")
            top = int(values.max()) + 1 if values.size else 0
            if top > MAX_CLASSES:
                raise DataError(f"{self.where}: a label of {top - 1}, over the cap of {MAX_CLASSES} classes (is the label column the right column?)")
            self.names += [str(i) for i in range(len(self.names), top)]
            return values.astype(np.int64)
        out = np.empty(len(values), np.int64)
        for i, v in enumerate(values.tolist()):
            key = "" if v is None else str(v)
            if key not in self.index:
                if len(self.index) >= MAX_CLASSES:
                    raise DataError(f"{self.where}: over {MAX_CLASSES} distinct labels (is the label column the right column?)")
                if len(key) > MAX_CLASS_NAME:
                    raise DataError(f"{self.where}: a label of {len(key)} characters, over the cap of {MAX_CLASS_NAME}")
                self.index[key] = len(self.names)
                self.names.append(key)
            out[i] = self.index[key]
        return out


def import_rows(path: Path, kind: str, options: ImportOptions, staging: Path, guard: FileGuard, say: Callable[[ImportProgress], None]) -> BuiltImport:
    chunk_rows = 8192
    reader = None
    if kind == "table":
        reader = _TableReader(path, options.label_column, options.feature_columns, guard, chunk_rows)  # .columns: the feature columns' names
        chunks = iter(reader)
    else:
        chunks = iter_text(path, None, options.label_column, options.text_column, guard, chunk_rows)
    labels = LabelIndex(str(path))
    pending: dict[str, list] = {s: [] for s in SPLITS}  # (x, y, bytes of each row) not yet in a shard
    shards: list[ShardInfo] = []
    index = {s: 0 for s in SPLITS}
    counts: dict[str, dict[int, int]] = {s: {} for s in SPLITS}
    shape, dtype, done = None, None, 0
    shard_bytes = int(options.shard_mb * MiB)

    def flush(split: str, final: bool) -> None:
        """Write whole shards (by bytes: rows of text vary) while enough rows wait, or all at the end."""
        while pending[split] and (final or sum(int(b.sum()) for _, _, b in pending[split]) >= shard_bytes):
            x = np.concatenate([x for x, _, _ in pending[split]])
            y = np.concatenate([y for _, y, _ in pending[split]])
            sizes = np.concatenate([b for _, _, b in pending[split]])
            take = max(1, int(np.searchsorted(np.cumsum(sizes), shard_bytes, side="right")))
            shards.append(write_shard(staging, split, index[split], x[:take], y[:take]))
            index[split] += 1
            pending[split] = [(x[take:], y[take:], sizes[take:])] if take < len(y) else []

    for chunk in chunks:
        y = labels(chunk.y)
        x = chunk.x
        if shape is None:
            shape, dtype = list(x.shape[1:]), str(x.dtype)
        elif list(x.shape[1:]) != shape or str(x.dtype) != dtype:
            raise DataError(f"{path}: rows from row {chunk.first_row} on have shape {list(x.shape[1:])} {x.dtype}, earlier rows {shape} {dtype}")
        u = np.random.default_rng([options.seed, chunk.first_row]).random(len(y))  # a row's split: a seeded draw keyed by its place
        test = u < options.test_fraction
        val = ~test & (u < options.test_fraction + (1 - options.test_fraction) * options.validation_fraction)
        for split, mask in (("train", ~test & ~val), ("val", val), ("test", test)):
            if mask.any():
                pending[split].append((x[mask], y[mask], _row_bytes(x[mask])))
                for c, n in zip(*np.unique(y[mask], return_counts=True)):
                    counts[split][int(c)] = counts[split].get(int(c), 0) + int(n)
            flush(split, False)
        done += len(y)
        say(ImportProgress(done, 0, "rows"))
    for split in SPLITS:
        flush(split, True)
    if shape is None:
        raise DataError(f"{path}: no rows")
    n = len(labels.names)
    source = file_hash(path, guard)
    return BuiltImport(
        kind,
        labels.names,
        {s: [counts[s].get(c, 0) for c in range(n)] for s in SPLITS},
        shape,
        dtype,
        shards,
        source,
        1,
        columns=list(reader.columns) if reader is not None else [],
    )


def _row_bytes(x: np.ndarray) -> np.ndarray:
    """About what each row takes in a shard: its numbers, or its text's characters."""
    if x.dtype != object:
        return np.full(len(x), max(1, x[:1].nbytes), np.int64)
    rows = x.reshape(len(x), -1)
    return np.array([sum(len(v) if isinstance(v, str) else 8 for v in row) + 8 for row in rows.tolist()], np.int64)
