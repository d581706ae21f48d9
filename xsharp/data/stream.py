"""Training rows read from a dataset's shards as a stream, never the whole set in memory.

The order is a pure function of (seed, phase, epoch, step, rank, world) and the shard sizes,
so a run stopped anywhere resumes bitwise where it stopped, with nothing of the stream itself
in the checkpoint but its position (phase, epoch, step), which every checkpoint holds:

1. each epoch draws a seeded permutation of the training shards: the epoch's stream is those
   shards' rows, one shard after another;
2. the stream is cut into one contiguous range per worker, each exactly as long as that
   worker's share of every global batch adds up to, so workers read disjoint rows (a shard at
   a boundary is split between two) and every row is seen exactly once per epoch;
3. a worker reads its range in windows of ``window`` rows and takes each window's rows in a
   seeded order: a shuffle buffer of one window, bounded in memory. Step s of an epoch takes
   rows ``[s*c, s*c + share)`` of that order, c being the worker's share of a full batch.

While one window is trained on, the next is read on a thread, so a worker holds at most two
windows, as stored (uint8 images stay bytes), plus a shard being read: memory is bounded by the
window and the shard size, whatever the dataset's size. Rows become floats (and pass the
feature steps) a batch at a time. Ray Data's iterators cannot resume mid-epoch (Ray issues
#37633, #48224), so this order is xsharp's own.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xsharp import backend

from .manifest import Manifest, ShardInfo
from .shards import Rows, read_shard

WINDOW_SHARDS = 2  # default window: two shards' rows


def share(n: int, rank: int, world: int) -> int:
    """How many of n rows rank takes (the first n % world ranks take one more)."""
    base, extra = divmod(n, world)
    return base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class Segment:
    shard: int  # index among the split's shards
    lo: int  # rows [lo, hi) of that shard
    hi: int


@dataclass(frozen=True)
class EpochPlan:
    """What one worker reads in one epoch: its segments of the epoch's stream, in order, and
    the window size its rows are shuffled within."""

    segments: tuple[Segment, ...]
    rows: int  # this worker's rows in the epoch
    per_step: int  # its share of a full batch
    window: int
    seed: int  # the key of the epoch's window permutations

    def positions(self, step: int, count: int) -> tuple[int, int]:
        lo = step * self.per_step
        return lo, lo + count

    def windows(self, lo: int, hi: int) -> range:
        return range(lo // self.window, (hi - 1) // self.window + 1) if hi > lo else range(0)

    def window_span(self, k: int) -> tuple[int, int]:
        return k * self.window, min((k + 1) * self.window, self.rows)

    def window_order(self, k: int) -> np.ndarray:
        a, b = self.window_span(k)
        return np.random.default_rng(backend.seed_of(self.seed, k)).permutation(b - a)

    def window_segments(self, k: int) -> list[Segment]:
        """The pieces of shards that make up window k, in stream order."""
        a, b = self.window_span(k)
        out, at = [], 0
        for s in self.segments:
            n = s.hi - s.lo
            lo, hi = max(a, at), min(b, at + n)
            if lo < hi:
                out.append(Segment(s.shard, s.lo + lo - at, s.lo + hi - at))
            at += n
            if at >= b:
                break
        return out


def plan_epoch(shard_rows: list[int], batch_size: int, window: int, seed: int, seed_phase: int, epoch: int, rank: int, world: int) -> EpochPlan:
    """Which rows of which shards ``rank`` reads in ``epoch`` (a pure decision: see the module doc)."""
    n = sum(shard_rows)
    steps = -(-n // batch_size)
    last = n - (steps - 1) * batch_size if steps else 0
    sizes = [(steps - 1) * share(batch_size, r, world) + share(last, r, world) if steps else 0 for r in range(world)]
    start = sum(sizes[:rank])
    stop = start + sizes[rank]
    order = np.random.default_rng(backend.seed_of(seed, seed_phase, epoch, 0x5EA)).permutation(len(shard_rows))
    segments, at = [], 0
    for i in order.tolist():
        lo, hi = max(start, at), min(stop, at + shard_rows[i])
        if lo < hi:
            segments.append(Segment(i, lo - at, hi - at))
        at += shard_rows[i]
    return EpochPlan(tuple(segments), sizes[rank], share(batch_size, rank, world), max(1, window), backend.seed_of(seed, seed_phase, epoch, rank, world))


@dataclass
class ShardedSplit:
    """One split of an imported dataset, where the shards are (it travels to workers as is).
    ``pipeline``: the fitted feature steps, applied to rows as they are read."""

    folder: Path
    manifest: Manifest
    split: str
    pipeline: Any = None
    window_rows: int | None = None  # None: WINDOW_SHARDS shards' rows

    @functools.cached_property
    def shards(self) -> list[ShardInfo]:
        return self.manifest.shards_of(self.split)

    @property
    def rows(self) -> int:
        return self.manifest.rows(self.split)

    def __len__(self) -> int:
        return self.rows

    @property
    def window(self) -> int:
        if self.window_rows:
            return self.window_rows
        return WINDOW_SHARDS * max((s.rows for s in self.shards), default=1)

    def read_stored(self, i: int) -> Rows:
        """Shard i as stored (uint8 images stay bytes), its checksum checked."""
        return read_shard(self.folder, self.shards[i], f"dataset {self.manifest.ref}")

    def read(self, i: int) -> Rows:
        """Shard i as the model reads it (floats; features applied)."""
        rows = self.read_stored(i)
        return Rows(self.prepare(rows.x), rows.y)

    def prepare(self, x: np.ndarray) -> np.ndarray:
        if self.manifest.dtype == "uint8":
            x = x.astype(np.float32) / 255.0  # as the in-memory readers make them
        elif x.dtype != object:
            x = x.astype(np.float32, copy=False)
        return self.pipeline.transform(x) if self.pipeline else x

    def __iter__(self) -> Iterator[Rows]:
        """Every shard in order (validation, test): one shard in memory at a time."""
        for i in range(len(self.shards)):
            yield self.read(i)

    def accuracy(self, model) -> float:
        correct, total = 0, 0
        for rows in self:
            correct += int((model.predict(rows.x) == rows.y).sum())
            total += len(rows)
        return correct / total if total else float("nan")

    def stream(self, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> TrainStream:
        return TrainStream(self, batch_size, seed, rank, world)


class Window:
    """A window's rows as read (pieces of shards, never copied whole) and the seeded order they
    are taken in: a step gathers only its own rows."""

    def __init__(self, parts: list[Rows], order: np.ndarray):
        self.parts, self.order = parts, order
        self.starts = np.cumsum([0] + [len(p) for p in parts])

    def take(self, a: int, b: int) -> Rows:
        """Rows ``a .. b`` of the window's order."""
        at = self.order[a:b]
        if len(self.parts) == 1:
            return Rows(self.parts[0].x[at], self.parts[0].y[at])
        part = np.searchsorted(self.starts, at, side="right") - 1
        first = self.parts[0]
        x = np.empty((len(at), *first.x.shape[1:]), first.x.dtype)
        y = np.empty(len(at), first.y.dtype)
        for p in np.unique(part).tolist():
            here = part == p
            local = at[here] - self.starts[p]
            x[here], y[here] = self.parts[p].x[local], self.parts[p].y[local]
        return Rows(x, y)


class TrainStream:
    """A worker's training rows, step by step, with the next window read ahead on a thread."""

    def __init__(self, split: ShardedSplit, batch_size: int, seed: int, rank: int, world: int):
        self.split, self.batch_size, self.seed, self.rank, self.world = split, batch_size, seed, rank, world
        self.shard_rows = [s.rows for s in split.shards]
        self._windows: dict[tuple, Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="xsharp-stream")
        self._plans: dict[tuple, EpochPlan] = {}  # the epoch in progress (and the one before, across a phase's turn)
        self.reads = 0  # shard reads (tests: a resumed run reads only from its window on)

    def plan(self, seed_phase: int, epoch: int, batch_size: int) -> EpochPlan:
        key = (seed_phase, epoch, batch_size)
        if key not in self._plans:
            if len(self._plans) >= 2:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plan_epoch(self.shard_rows, batch_size, self.split.window, self.seed, seed_phase, epoch, self.rank, self.world)
        return self._plans[key]

    def _load(self, plan: EpochPlan, k: int) -> Window:
        parts = []
        for seg in plan.window_segments(k):
            rows = self.split.read_stored(seg.shard)  # a window holds rows as stored: uint8 images stay 4x smaller
            self.reads += 1
            parts.append(Rows(rows.x[seg.lo : seg.hi], rows.y[seg.lo : seg.hi]))
        return Window(parts, plan.window_order(k))

    def _window(self, key: tuple, plan: EpochPlan, k: int, ahead: bool = False) -> Future:
        with self._lock:
            f = self._windows.get(key + (k,))
            if f is None:
                f = self._pool.submit(self._load, plan, k)
                self._windows[key + (k,)] = f
            # keep the window in use and the one after it; drop the rest
            for old in [w for w in self._windows if w[:-1] != key or not (k - (1 if ahead else 0) <= w[-1] <= k + 1)]:
                self._windows.pop(old)
            return f

    def batch(self, seed_phase: int, epoch: int, step: int, count: int, batch_size: int | None = None) -> Rows:
        """This worker's ``count`` rows of step ``step`` (its share of the global batch)."""
        plan = self.plan(seed_phase, epoch, batch_size or self.batch_size)
        lo, hi = plan.positions(step, count)
        key = (seed_phase, epoch, plan.per_step)
        xs, ys = [], []
        for k in plan.windows(lo, hi):
            w = self._window(key, plan, k).result()
            a, _ = plan.window_span(k)
            rows = w.take(max(lo, a) - a, hi - a)
            xs.append(rows.x)
            ys.append(rows.y)
        last = (hi - 1) // plan.window if hi > lo else lo // plan.window
        if (last + 1) * plan.window < plan.rows:
            self._window(key, plan, last + 1, ahead=True)  # read the next window while this one trains
        if not xs:  # no rows for this worker at this step
            m = self.split.manifest
            xs, ys = [np.zeros((0, *m.shape), object if m.dtype == "object" else m.dtype)], [np.zeros(0, np.int64)]
        x = xs[0] if len(xs) == 1 else np.concatenate(xs)
        return Rows(self.split.prepare(x), ys[0] if len(ys) == 1 else np.concatenate(ys))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._windows.clear()
