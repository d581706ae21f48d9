"""Gradient buckets: fine-tuning's [gradient, loss, stop] buffer summed over the workers in
ranges, each started as soon as the backward pass has filled it (last module first), on a
thread of its own while earlier modules still compute. Ranges are at least ``bucket_bytes``
where the modules allow: fewer, larger messages (a Ray message costs ~1 ms)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

BUCKET_BYTES = 1 << 20


class BucketedAllreduce:
    """Training's ``OverlappedAllreduce`` over a collective's ``allreduce``: sums run one at a
    time in the order sent, the same on every worker, so their exchanges pair up."""

    def __init__(self, allreduce: Callable[[Any], Any], bucket_bytes: int = BUCKET_BYTES):
        self.allreduce, self.bucket_bytes = allreduce, bucket_bytes
        self._thread: ThreadPoolExecutor | None = None  # made on first use
        self._pending: list[Future] = []

    def buckets(self, module_slices: list[slice], length: int, itemsize: int) -> dict[int, slice]:
        """The ranges of a buffer of ``length`` entries (the modules' parameters, then extras),
        keyed by the module whose gradient completes each: a range ends where the one after it
        begins and grows down over modules until it holds ``bucket_bytes``; the extras ride
        with the last module's. The same on every worker."""
        out, stop = {}, length
        for m in range(len(module_slices) - 1, -1, -1):
            start = module_slices[m].start
            if m == 0 or (stop - start) * itemsize >= self.bucket_bytes:
                out[m] = slice(start, stop)
                stop = start
        return out

    def send(self, part: Any) -> None:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="xsharp-allreduce")
        self._pending.append(self._thread.submit(self.allreduce, part))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()
