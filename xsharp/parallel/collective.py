"""Collectives over one flat float32 buffer: ``allreduce(buf)`` (sum) and ``broadcast(buf, root)``.

:class:`RayCollective` moves data between worker actors through Ray's object store with a ring:
reduce-scatter then all-gather, so each worker sends and receives 2 (N-1)/N of the buffer
whatever N is, and every worker ends with bit-identical sums (each chunk is summed in one
fixed order, then copied). Workers are threaded actors that mix in :class:`CollectiveMember`;
a peer's chunk arrives through ``deliver`` on a second thread while training runs on the first.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from xsharp import backend


class CollectiveError(RuntimeError):
    """A peer did not answer in time (it died, or the group is misconfigured)."""


class Mailbox:
    """Messages for one worker, keyed by (operation, phase, step); safe across threads."""

    def __init__(self) -> None:
        self._items: dict[tuple, Any] = {}
        self._cv = threading.Condition()

    def put(self, key: tuple, value: Any) -> None:
        with self._cv:
            self._items[key] = value
            self._cv.notify_all()

    def take(self, key: tuple, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._cv:
            while key not in self._items:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CollectiveError(f"no message {key} from a peer within {timeout:.0f} s")
                self._cv.wait(left)
            return self._items.pop(key)


class CollectiveMember:
    """Mix into a Ray actor class (created with ``max_concurrency >= 2``) to join a collective."""

    def _mailbox(self) -> Mailbox:
        if not hasattr(self, "_xsharp_mailbox"):
            self._xsharp_mailbox = Mailbox()
        return self._xsharp_mailbox

    def deliver(self, key: tuple, value: Any) -> None:
        self._mailbox().put(key, value)

    def ping(self) -> bool:
        return True


class RayCollective:
    def __init__(self, rank: int, peers: list[Any], mailbox: Mailbox, timeout: float = 300.0):
        self.rank = rank
        self.world = len(peers)
        self.peers = peers
        self.mailbox = mailbox
        self.timeout = timeout
        self._op = 0

    def _send(self, dst: int, key: tuple, value: np.ndarray) -> None:
        # Arguments are serialised at call time, so the buffer may change right after.
        self.peers[dst].deliver.remote(key, value)

    def _take(self, key: tuple) -> np.ndarray:
        return self.mailbox.take(key, self.timeout)

    def allreduce(self, buf: Any) -> Any:
        """Sum ``buf`` over all workers, in place; returns ``buf``."""
        if self.world == 1:
            return buf
        self._op += 1
        host = backend.to_host(buf)
        on_device = host is not buf
        if on_device:
            host = host.copy()
        n, rank, world = host.shape[0], self.rank, self.world
        bounds = [n * i // world for i in range(world + 1)]
        chunk = lambda i: host[bounds[i] : bounds[i + 1]]  # noqa: E731
        nxt = (rank + 1) % world
        for s in range(world - 1):  # reduce-scatter: afterwards rank owns chunk rank+1
            self._send(nxt, (self._op, "rs", s), chunk((rank - s) % world))
            chunk((rank - s - 1) % world)[...] += self._take((self._op, "rs", s))
        for s in range(world - 1):  # all-gather: pass the reduced chunks round the ring
            self._send(nxt, (self._op, "ag", s), chunk((rank + 1 - s) % world))
            chunk((rank - s) % world)[...] = self._take((self._op, "ag", s))
        if on_device:
            buf[...] = backend.xp_of(buf).asarray(host)
        return buf

    def broadcast(self, buf: Any, root: int = 0) -> Any:
        """Copy ``root``'s buffer into every worker's ``buf``, in place."""
        if self.world == 1:
            return buf
        self._op += 1
        if self.rank == root:
            host = backend.to_host(buf)
            for dst in range(self.world):
                if dst != root:
                    self._send(dst, (self._op, "bc", root), host)
        else:
            buf[...] = backend.xp_of(buf).asarray(self._take((self._op, "bc", root)))
        return buf
