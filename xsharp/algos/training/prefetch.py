"""Input overlap: the rows of an upcoming step gathered on a background thread while this step
computes, for batches large enough that the thread hand-off pays."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from xsharp import backend

PREFETCH_KB = 1024  # batches smaller than this (KiB) are gathered inline: a thread hand-off costs more
PREFETCH_BYTES = PREFETCH_KB * 1024
MAX_PREFETCH_KB = 1 << 20  # 1 GiB: past any batch that fits in memory


def prefetch_bytes(kib: int) -> int | None:
    """The engine's gather-ahead threshold for a ``prefetch`` setting in KiB (0: off, None)."""
    if not 0 <= kib <= MAX_PREFETCH_KB:
        raise ValueError(f"prefetch: must be KiB in 0..{MAX_PREFETCH_KB} (0: off), got {kib}")
    return None if kib == 0 else kib * 1024


class Prefetcher:
    """Gathers the rows of an upcoming step on a background thread while this step computes.

    Below ``min_bytes`` a batch is gathered inline (a thread hand-off costs more than copying a
    small batch); ``None`` gathers every batch inline (off). Either way the same rows come back,
    so results never depend on it."""

    def __init__(self, min_bytes: int | None = PREFETCH_BYTES):
        self.min_bytes = min_bytes
        self.arrays: tuple = ()
        self.hits = 0  # batches that were ready ahead
        self._ahead: tuple | None = None
        self._pool: ThreadPoolExecutor | None = None

    def source(self, *arrays: Any) -> None:
        self.arrays, self._ahead = arrays, None

    def _gather(self, rows: np.ndarray) -> tuple:
        r = backend.xp_of(self.arrays[0]).asarray(rows)
        return tuple(a[r] for a in self.arrays)

    def get(self, key: Any, rows: np.ndarray) -> tuple:
        if self._ahead is not None and self._ahead[0] == key:
            future, self._ahead = self._ahead[1], None
            self.hits += 1
            return future.result()
        return self._gather(rows)

    def ahead(self, key: Any, rows: np.ndarray) -> None:
        if self.min_bytes is None or len(rows) * sum(a[0].nbytes for a in self.arrays) < self.min_bytes:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="xsharp-prefetch")
        self._ahead = (key, self._pool.submit(self._gather, rows))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool, self._ahead = None, None
