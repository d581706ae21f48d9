"""Collectives over one flat float32 buffer: ``allreduce(buf)`` (sum) and ``broadcast(buf, root)``,
and on the ring ``overlapped()``, the gradient buckets of ``.buckets`` (training's ``Collective``).

:class:`RayCollective` has three transports, chosen on the first call:

- **ring** (any placement): data moves between worker actors through Ray's object store with a
  ring, reduce-scatter then all-gather, so each worker sends and receives 2 (N-1)/N of the
  buffer whatever N is. Workers are threaded actors that mix in :class:`CollectiveMember`; a
  peer's chunk arrives through ``deliver`` on a second thread while training runs on the first.
- **shm** (every worker on one node): each worker maps one shared-memory segment per peer
  (``/dev/shm``) and the group synchronises on per-worker sequence counters in shared memory.
  A Ray message costs about 1 ms and one that carries more than 100 KB about 3 ms more (it goes
  through the object store); a shared-memory allreduce of 6 MB takes about a memcpy. That is
  what makes data parallel pay on one multi-core node (bench/parallel.py measures both).
  Reduce-scatter then all-gather as in the ring: worker r sums chunk r of every segment.

- **nccl** (every worker's buffer on a GPU, CuPy with NCCL present): ``cupy.cuda.nccl``, the
  unique id made by rank 0 and passed to its peers through Ray (``ray.util.collective`` needs
  torch in Ray 2.60). The buffer never leaves the GPU.

Every worker ends with bit-identical sums: each chunk is summed in one fixed order, then
copied. ``XSHARP_COLLECTIVE=ring|shm|nccl`` forces a transport (for comparisons).
"""

from __future__ import annotations

import mmap
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from xsharp import backend

from .buckets import BUCKET_BYTES, BucketedAllreduce


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


SHM_DIR = Path("/dev/shm")


def _node_id() -> str:
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # not inside Ray (unit use): one process is one node
        return f"pid-{os.getpid()}"


def _nccl_module() -> Any:
    """``cupy.cuda.nccl`` where CuPy was built with NCCL, else None."""
    try:
        from cupy.cuda import nccl
    except ImportError:
        return None
    return nccl if getattr(nccl, "available", True) else None


class SharedSegments:
    """Shared-memory buffers and sequence counters of a group whose workers share one node.

    Worker r creates its own files, waits (through the Ray mailbox, once per buffer size) until
    every peer has mapped them, then unlinks them: the mappings live on, and nothing is left in
    /dev/shm however the workers end.
    """

    def __init__(self, rank: int, world: int, token: str, handshake, timeout: float):
        self.rank, self.world, self.token, self.timeout = rank, world, token, timeout
        self._handshake = handshake  # (tag) -> None: a barrier through the mailbox
        self._by_size: dict[int, list[list[np.ndarray]]] = {}  # n -> [parity][rank] -> array
        self._seq = 0
        self.flags = self._map_all("flags", 8, np.int64)  # flags[r][0]: how many barriers r has passed

    def _path(self, what: str, rank: int) -> Path:
        return SHM_DIR / f"xsharp-coll-{self.token}-{what}-{rank}"

    def _map(self, path: Path, nbytes: int, dtype, create: bool) -> np.ndarray:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0), 0o600)
        try:
            if create:
                os.ftruncate(fd, nbytes)
            mem = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        return np.frombuffer(mem, dtype=dtype)

    def _map_all(self, what: str, nbytes: int, dtype) -> list[np.ndarray]:
        own = self._map(self._path(what, self.rank), nbytes, dtype, create=True)
        self._handshake(("shm-created", what))
        arrays = [own if r == self.rank else self._map(self._path(what, r), nbytes, dtype, create=False) for r in range(self.world)]
        self._handshake(("shm-mapped", what))
        self._path(what, self.rank).unlink()
        return arrays

    def buffers(self, n: int, parity: int) -> list[np.ndarray]:
        if n not in self._by_size:
            self._by_size[n] = [[a[:n] for a in self._map_all(f"buf{n}p{p}", max(4 * n, 4), np.float32)] for p in (0, 1)]
            # the handshake passed no counter: every worker is at the same barrier count here
        return self._by_size[n][parity]

    def barrier(self) -> None:
        """Wait until every worker has called barrier() as often as this one."""
        self._seq += 1
        self.flags[self.rank][0] = self._seq
        deadline, spins = time.monotonic() + self.timeout, 0
        while min(int(f[0]) for f in self.flags) < self._seq:
            spins += 1
            if spins < 300:  # a peer a few microseconds behind: do not give up the core yet
                continue
            if time.monotonic() > deadline:
                raise CollectiveError(f"a peer did not reach shared-memory barrier {self._seq} within {self.timeout:.0f} s")
            time.sleep(0.0001 if spins < 20000 else 0.001)


class RayCollective:
    def __init__(
        self,
        rank: int,
        peers: list[Any],
        mailbox: Mailbox,
        timeout: float = 300.0,
        transport: str | None = None,
        overlap: bool = False,
        bucket_bytes: int = BUCKET_BYTES,
    ):
        self.rank = rank
        self.world = len(peers)
        self.peers = peers
        self.mailbox = mailbox
        self.timeout = timeout
        self._op = 0
        self.overlap, self.bucket_bytes = overlap, bucket_bytes
        # the environment overrides the spec: for comparisons on a cluster whose specs say auto
        self.requested = os.environ.get("XSHARP_COLLECTIVE") or transport or "auto"
        if self.requested not in ("auto", "ring", "shm", "nccl"):
            raise ValueError(f"XSHARP_COLLECTIVE / transport: must be auto, ring, shm or nccl, got {self.requested!r}")
        self.transport: str | None = None  # decided on the first call, together with every peer
        self._shm: SharedSegments | None = None
        self._nccl: Any = None
        self._buckets: BucketedAllreduce | None = None  # made on first use

    def overlapped(self) -> BucketedAllreduce | None:
        """The reducer that sends finished layers during the backward pass, where asked for
        (``overlap``) and on the ring, where an allreduce waits on Ray messages; else None.
        Shared memory is a memcpy on the core that computes, so there it would only add a thread
        hand-off, and NCCL sums on the GPU. Measured on one 2-core node the ring gained nothing
        either (0.69-1.03x: its serialisation and copies compete with the compute), hence off by
        default; it is for nodes whose network, not CPU, is the bottleneck. ``XSHARP_OVERLAP=0``
        turns it off whatever the spec says. The transport is known after the first call."""
        if not (self.transport == "ring" and self.overlap and os.environ.get("XSHARP_OVERLAP", "1") != "0"):
            return None
        if self._buckets is None:
            self._buckets = BucketedAllreduce(self.allreduce, self.bucket_bytes)
        return self._buckets

    def _exchange(self, tag: tuple, value: Any) -> dict[int, Any]:
        """Every worker's ``value`` for ``tag``, by rank: returns once every peer has sent its own."""
        for dst in range(self.world):
            if dst != self.rank:
                self.peers[dst].deliver.remote((tag, self.rank), value)
        return {src: value if src == self.rank else self._take((tag, src)) for src in range(self.world)}

    def _handshake(self, tag: tuple) -> None:
        """A barrier through Ray messages: returns when every peer has reached the same tag."""
        self._exchange(("hs", tag), True)

    def _setup(self, buf: Any) -> None:
        """Choose the transport with every peer: NCCL when every buffer is on a GPU, shared
        memory when every worker is on this node, else the ring (unless one is forced)."""
        nccl = _nccl_module() if backend.to_host(buf) is not buf and self.requested in ("auto", "nccl") else None
        uid = nccl.get_unique_id() if nccl is not None and self.rank == 0 else None
        seen = self._exchange(("setup",), (_node_id(), uuid.uuid4().hex[:12] if self.rank == 0 else "", nccl is not None, uid))
        same_node = len({info[0] for info in seen.values()}) == 1
        all_gpu = all(info[2] for info in seen.values())
        if self.requested == "shm" and not same_node:
            raise CollectiveError("XSHARP_COLLECTIVE=shm needs every worker on one node; they are on several")
        if self.requested == "nccl" and not all_gpu:
            raise CollectiveError("XSHARP_COLLECTIVE=nccl needs every worker's buffer on a GPU and CuPy with NCCL")
        if all_gpu and self.requested in ("auto", "nccl"):
            self._nccl = (nccl, nccl.NcclCommunicator(self.world, seen[0][3], self.rank))  # blocks until every rank joins
            self.transport = "nccl"
        elif self.requested in ("auto", "shm") and same_node and SHM_DIR.is_dir():
            self._shm = SharedSegments(self.rank, self.world, seen[0][1], self._handshake, self.timeout)
            self.transport = "shm"
        else:
            self.transport = "ring"

    def _nccl_call(self, buf: Any, root: int | None) -> Any:
        nccl, comm = self._nccl
        kinds = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
        if buf.dtype not in kinds or not buf.flags.c_contiguous:
            raise CollectiveError(f"NCCL collectives take one contiguous float32/float64 buffer, got {buf.dtype}")
        xp = backend.xp_of(buf)
        stream = xp.cuda.get_current_stream()
        if root is None:
            comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, kinds[buf.dtype], nccl.NCCL_SUM, stream.ptr)
        else:
            comm.bcast(buf.data.ptr, buf.size, kinds[buf.dtype], root, stream.ptr)
        stream.synchronize()
        return buf

    def _send(self, dst: int, key: tuple, value: np.ndarray) -> None:
        # Arguments are serialised at call time, so the buffer may change right after.
        self.peers[dst].deliver.remote(key, value)

    def _take(self, key: tuple) -> np.ndarray:
        return self.mailbox.take(key, self.timeout)

    def allreduce(self, buf: Any) -> Any:
        """Sum ``buf`` over all workers, in place; returns ``buf``."""
        if self.world == 1:
            return buf
        if self.transport is None:
            self._setup(buf)
        self._op += 1
        if self._nccl is not None:
            return self._nccl_call(buf, None)
        host = backend.to_host(buf)
        on_device = host is not buf
        if on_device:
            host = host.copy()
        if self._shm is not None:
            self._shm_allreduce(host)
        else:
            self._ring_allreduce(host)
        if on_device:
            buf[...] = backend.xp_of(buf).asarray(host)
        return buf

    def _shm_allreduce(self, host: np.ndarray) -> None:
        # Double-buffered by the parity of the operation: the next call writes the other set,
        # so a peer still copying out of this one cannot be overwritten (two barriers per call).
        n, rank, world = host.shape[0], self.rank, self.world
        segs = self._shm.buffers(n, self._op % 2)
        bounds = [n * i // world for i in range(world + 1)]
        lo, hi = bounds[rank], bounds[rank + 1]
        segs[rank][...] = host
        self._shm.barrier()
        mine = host[lo:hi]
        np.add(segs[0][lo:hi], segs[1][lo:hi], out=mine)
        for r in range(2, world):
            mine += segs[r][lo:hi]
        segs[rank][lo:hi] = mine
        self._shm.barrier()
        for r in range(world):
            if r != rank:
                host[bounds[r] : bounds[r + 1]] = segs[r][bounds[r] : bounds[r + 1]]

    def _ring_allreduce(self, host: np.ndarray) -> None:
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

    def broadcast(self, buf: Any, root: int = 0) -> Any:
        """Copy ``root``'s buffer into every worker's ``buf``, in place."""
        if self.world == 1:
            return buf
        if self.transport is None:
            self._setup(buf)
        self._op += 1
        if self._nccl is not None:
            return self._nccl_call(buf, root)
        if self._shm is not None:
            seg = self._shm.buffers(buf.shape[0], self._op % 2)[root]
            if self.rank == root:
                seg[...] = backend.to_host(buf)
            self._shm.barrier()
            if self.rank != root:
                buf[...] = backend.xp_of(buf).asarray(seg)
            return buf
        if self.rank == root:
            host = backend.to_host(buf)
            for dst in range(self.world):
                if dst != root:
                    self._send(dst, (self._op, "bc", root), host)
        else:
            buf[...] = backend.xp_of(buf).asarray(self._take((self._op, "bc", root)))
        return buf
