"""A job's data when its spec names an imported dataset (``data: {dataset: NAME}``).

A small dataset is read whole into memory, as the bundled sets are: every execution mode
takes it, and at that size it is as fast as streaming or faster (bench/data.py measures it).
A larger one, or any with ``data.stream: true``, is streamed: the job gets a
:class:`StreamedData` whose training rows are read shard by shard (``xsharp.data.stream``)
and whose validation and test splits are scored shard by shard, so no worker ever holds the
whole set. Streaming serves the local and data_parallel modes.

Feature steps of a streamed dataset are fitted on the first ``FIT_ROWS`` training rows (the
import shuffled them, so those are a fair sample), then applied to each shard as it is read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xsharp.algos import features as feature_steps
from xsharp.fileguard import DataError

from .catalog import Catalog, DatasetRef
from .dataset import Dataset
from .manifest import SPLITS, Manifest
from .stream import ShardedSplit

IN_MEMORY_BYTES = 1 << 30  # auto: a dataset up to this many bytes as float32 rows is read whole
FIT_ROWS = 50_000  # rows a streamed dataset's feature steps are fitted on
STREAM_MODES = ("local", "data_parallel")


@dataclass
class StreamedData:
    """Stands where a :class:`~xsharp.data.dataset.Dataset` stands, with shards for arrays."""

    name: str
    train: ShardedSplit
    x_val: ShardedSplit
    x_test: ShardedSplit
    classes: list[str]
    in_shape: tuple
    pipeline: Any = None
    test_speakers: list[str] = field(default_factory=list)
    x_train = None
    y_train = None
    y_val = None
    y_test = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_train(self) -> int:
        return self.train.rows

    def __repr__(self) -> str:
        return (
            f"StreamedData({self.name}: {self.train.rows} train, {self.x_val.rows} val, {self.x_test.rows} test, "
            f"shape {self.in_shape}, {self.n_classes} classes, {len(self.train.shards)} train shards)"
        )


def float_bytes(m: Manifest) -> int:
    """The dataset's rows as float32 arrays in memory."""
    per_row = int(np.prod(m.shape, dtype=np.int64)) * 4 if m.dtype != "object" else 0
    return per_row * sum(m.rows(s) for s in SPLITS)


def should_stream(m: Manifest, stream: bool | None, mode: str) -> bool:
    if stream is None:
        return mode in STREAM_MODES and m.dtype != "object" and float_bytes(m) > IN_MEMORY_BYTES
    if stream and mode not in STREAM_MODES:
        raise DataError(f"data.stream: streaming serves the {' and '.join(STREAM_MODES)} modes; mode {mode} trains from memory (set data.stream: false)")
    return stream


def read_whole(catalog: Catalog, m: Manifest) -> Dataset:
    """Every split in memory, as ``datasets.load`` gives a bundled set (the same floats)."""
    folder = catalog.path_of(m)
    parts = {}
    for split in SPLITS:
        s = ShardedSplit(folder, m, split)
        xs, ys = [], []
        for rows in s:
            xs.append(rows.x)
            ys.append(rows.y)
        empty = np.zeros((0, *m.shape), np.float32 if m.dtype != "object" else object)
        parts[split] = (np.concatenate(xs) if xs else empty, np.concatenate(ys) if ys else np.zeros(0, np.int64))
    return Dataset(m.ref, *parts["train"], *parts["val"], *parts["test"], classes=list(m.classes), columns=list(m.columns))


def load(
    ref: str,
    catalog: Catalog,
    user: str,
    *,
    mode: str,
    stream: bool | None = None,
    limit: int | None = None,
    features: list | None = None,
    augment: Any = None,
    seed: int = 0,
    device: str = "cpu",
):
    """The job's data for dataset ``ref``: a Dataset in memory, or a StreamedData."""
    m = catalog.find(DatasetRef.parse(ref), user)
    if not should_stream(m, stream, mode):
        data = read_whole(catalog, m)
        if limit is not None:
            data = dataclasses.replace(data, x_train=data.x_train[:limit], y_train=data.y_train[:limit])
        return feature_steps.prepare(data, features, augment, seed=seed, device=device)
    if limit is not None or augment is not None:
        raise DataError(f"data.{'limit' if limit is not None else 'augment'}: not available when a dataset is streamed (data.stream: false reads it whole)")
    folder = catalog.path_of(m)
    pipeline, in_shape = None, tuple(m.shape)
    if features:
        pipeline = feature_steps.Pipeline.from_spec(features, None, device)
        pipeline.raw_shape = tuple(m.shape)
        sample = _first_rows(ShardedSplit(folder, m, "train"), FIT_ROWS)
        try:
            in_shape = tuple(pipeline.fit(sample, seed).shape[1:])  # what the model reads
        except (ValueError, TypeError, IndexError) as e:
            raise DataError(
                f"{m.ref}: data.features: the steps cannot take these rows ({type(e).__name__}; rows of shape {tuple(m.shape)}, {m.dtype})"
            ) from None
    train, val, test = (ShardedSplit(folder, m, s, pipeline) for s in SPLITS)
    return StreamedData(m.ref, train, val, test, list(m.classes), in_shape, pipeline)


def _first_rows(split: ShardedSplit, n: int) -> np.ndarray:
    xs, have = [], 0
    for rows in split:
        xs.append(rows.x[: n - have])
        have += len(xs[-1])
        if have >= n:
            break
    return np.concatenate(xs)
