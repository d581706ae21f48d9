"""A gang-placed group of worker actors: all N are reserved at once or none is.

The placement group holds one bundle per worker; if the cluster can never hold the group the
caller hears why at once, and if it is only busy, after ``timeout`` seconds. Helper actors
that need no reservation of their own (parameter servers) join the group with :meth:`spawn`
and go with it. :func:`wait` is ``ray.get`` for a group: it notices a dead member while it
waits and says which one died.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from xsharp.backend import cap_heap


class PlacementError(RuntimeError):
    """The worker group does not fit the cluster."""


class WorkerFailed(RuntimeError):
    """A worker of the group died or raised."""


def _describe(cpus: float, gpus: float) -> str:
    return f"{cpus:g} CPU" + (f" + {gpus:g} GPU" if gpus else "")


def bundles(workers: int, cpus: float, gpus: float) -> list[dict]:
    """One placement-group bundle per worker."""
    bundle = {"CPU": cpus} | ({"GPU": gpus} if gpus else {})
    return [dict(bundle) for _ in range(workers)]


class WorkerGroup:
    """``placement_group``: place into a reservation someone else made (and keeps); otherwise
    reserve one here and release it on exit."""

    def __init__(
        self,
        actor_cls: Any,
        workers: int,
        cpus: float,
        gpus: float,
        *,
        timeout: float = 60.0,
        concurrency: int = 4,
        placement_group: Any = None,
        memory_limit: int | None = None,
    ):
        self.actor_cls, self.workers, self.cpus, self.gpus = actor_cls, workers, cpus, gpus
        self.timeout, self.concurrency = timeout, concurrency
        self.pg = placement_group
        self.owns_pg = placement_group is None
        self.memory_limit = memory_limit
        self.actors: list[Any] = []
        self.helpers: list[Any] = []

    def __enter__(self) -> WorkerGroup:
        if self.pg is None:
            self._reserve()
        self.actors = [
            self.actor_cls.options(
                num_cpus=self.cpus,
                num_gpus=self.gpus,
                max_concurrency=self.concurrency,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i),
            ).remote()
            for i in range(self.workers)
        ]
        if self.memory_limit:  # before any work reaches them
            ray.get([a.__ray_call__.remote(_cap_heap, self.memory_limit) for a in self.actors])
        return self

    def _reserve(self) -> None:
        need = f"{self.workers} workers x {_describe(self.cpus, self.gpus)}"
        total = ray.cluster_resources()
        have_cpu, have_gpu = total.get("CPU", 0.0), total.get("GPU", 0.0)
        if self.cpus * self.workers > have_cpu or self.gpus * self.workers > have_gpu:
            raise PlacementError(f"{need} can never fit: the cluster has {_describe(have_cpu, have_gpu)} in all")
        self.pg = placement_group(bundles(self.workers, self.cpus, self.gpus), strategy="PACK")
        ready, _ = ray.wait([self.pg.ready()], timeout=self.timeout)
        if not ready:
            free = ray.available_resources()
            self.close()
            raise PlacementError(f"{need} did not fit within {self.timeout:.0f} s: {_describe(free.get('CPU', 0.0), free.get('GPU', 0.0))} free now")

    def spawn(self, actor_cls: Any, args: list[tuple], **options: Any) -> list[Any]:
        """One helper actor per ``args`` tuple, using no CPU, spread over the workers' bundles;
        they close with the group."""
        helpers = [
            actor_cls.options(
                num_cpus=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i % self.workers),
                **options,
            ).remote(*a)
            for i, a in enumerate(args)
        ]
        self.helpers += helpers
        return helpers

    def close(self) -> None:
        for actor in self.actors + self.helpers:
            ray.kill(actor, no_restart=True)
        self.actors, self.helpers = [], []
        if self.pg is not None and self.owns_pg:
            remove_placement_group(self.pg)
        self.pg = None

    def __exit__(self, *exc) -> None:
        self.close()


def _cap_heap(actor: Any, limit: int) -> None:
    cap_heap(limit)


def cause(error: Exception) -> str:
    """One line saying why a remote call failed."""
    inner = getattr(error, "cause", None)
    if inner is not None:
        return f"{type(inner).__name__}: {inner}"
    return str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__


def wait(refs: Any, what: str, watch: Callable[[], list] = list, poll: float = 1.0) -> Any:
    """``ray.get(refs)``; while waiting, every ``poll`` seconds the refs ``watch()`` returns
    (other calls in flight, pings) are checked too, so a dead member ends the wait at once
    instead of leaving it to hang on a peer that will never answer. Failures raise WorkerFailed."""
    many = isinstance(refs, list)
    pending = list(refs) if many else [refs]
    try:
        while True:
            ready, _ = ray.wait(pending, num_returns=len(pending), timeout=poll)
            if len(ready) == len(pending):
                return ray.get(refs)
            ray.get(ready)  # one that failed while the others wait on it
            others = watch()
            if others:
                done, _ = ray.wait(others, num_returns=len(others), timeout=0)
                ray.get(done)
    except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
        raise WorkerFailed(f"{what}: {cause(e)}") from None


class EventPoll:
    """Fetch an actor's queued events with one call at a time: a call not back within the
    timeout is read on the next ``take``, not replaced, since it still drains the queue when it
    runs and its events would be lost with it."""

    def __init__(self, call: Callable[[], Any]):
        self.call, self.ref = call, None

    def take(self, timeout: float) -> list | None:
        """The events, or None when the call is not back yet or the actor has died."""
        if self.ref is None:
            self.ref = self.call()
        try:
            events = ray.get(self.ref, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            return None
        except ray.exceptions.RayError:  # the actor died (killed for memory, say): its run's end says why
            events = None
        self.ref = None
        return events
