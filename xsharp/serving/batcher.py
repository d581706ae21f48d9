"""Micro-batching: concurrent callers' rows computed as one batch.

While a batch computes (on a worker thread), new requests queue; the next batch takes every
queued request, up to ``max_rows`` rows. One caller alone waits for nothing: there is no timer,
so a batch is only as large as the load makes it. A batch whose run fails is run again one
request at a time, so a bad request fails alone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class _Waiting:
    rows: np.ndarray
    done: asyncio.Future


class MicroBatcher:
    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_rows: int):
        """``run(rows)`` returns one output row per input row; it runs on a worker thread."""
        self.run, self.max_rows = run, max_rows
        self.batches = 0  # batches run, and the requests they held: how much batching the load gave
        self.requests = 0
        self._queue: deque[_Waiting] = deque()
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (a new server in the same process): start afresh
            self._loop, self._queue, self._worker = loop, deque(), None
        waiting = _Waiting(rows, loop.create_future())
        self._queue.append(waiting)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await waiting.done

    async def _drain(self) -> None:
        while self._queue:
            batch, n = [], 0
            while self._queue and (not batch or n + len(self._queue[0].rows) <= self.max_rows):
                batch.append(self._queue.popleft())
                n += len(batch[-1].rows)
            live = [w for w in batch if not w.done.done()]  # a caller that left is not computed for
            if live:
                await self._run(live)

    async def _run(self, batch: list[_Waiting]) -> None:
        loop = asyncio.get_running_loop()
        rows = batch[0].rows if len(batch) == 1 else np.concatenate([w.rows for w in batch])
        self.batches += 1
        self.requests += len(batch)
        try:
            out = await loop.run_in_executor(None, self.run, rows)
        except Exception as e:
            if len(batch) > 1:
                for w in batch:  # one request's rows spoilt the batch: find it, answer the rest
                    await self._run([w])
            elif not batch[0].done.done():
                batch[0].done.set_exception(e)
            return
        start = 0
        for w in batch:
            if not w.done.done():
                w.done.set_result(out[start : start + len(w.rows)])
            start += len(w.rows)
