"""What training needs of a group of workers, declared: sums and copies of one flat buffer, and
(where the transport gains by it) a reducer that sums a buffer in ranges while the backward
pass still fills the rest. ``xsharp.parallel.collective`` implements it across processes;
:class:`SingleWorker` is the group of one."""

from __future__ import annotations

from typing import Any, Protocol


class OverlappedAllreduce(Protocol):
    """Sums ranges of a buffer over the workers, each started as soon as it is filled, in the
    order started (the same on every worker); the collective takes no other call meanwhile."""

    def buckets(self, module_slices: list[slice], length: int, itemsize: int) -> dict[int, slice]:
        """The ranges of a buffer of ``length`` entries (the modules' parameters, then extras)
        to send, keyed by the module whose gradient completes each (last module first)."""

    def send(self, part: Any) -> None:
        """Start summing ``part`` (a view of the buffer) in place; returns at once."""

    def wait(self) -> None:
        """Return once every part sent is summed."""


class Collective(Protocol):
    rank: int
    world: int

    def allreduce(self, buf: Any) -> Any: ...

    def broadcast(self, buf: Any, root: int = 0) -> Any: ...

    def overlapped(self) -> OverlappedAllreduce | None:
        """The reducer that sends gradients during the backward pass, where this group's
        transport gains by it; None where it does not (call after the first exchange)."""


class SingleWorker:
    """The collective of a group of one: nothing to exchange."""

    rank, world = 0, 1

    def allreduce(self, buf):
        return buf

    def broadcast(self, buf, root=0):
        return buf

    def overlapped(self) -> None:
        return None
