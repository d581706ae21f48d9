"""Synchronous data parallel: N gang-placed worker actors, each on its share of every global
batch, gradients averaged every step by a ring allreduce over Ray's object store.

For the same seed and global batch it computes what local mode computes (see algos.training).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import ray

from xsharp.algos.training import Progress, Stopped
from xsharp.spec import JobSpec

from .collective import CollectiveMember, RayCollective
from .execution import RunContext, RunResult, train_worker
from .group import WorkerGroup


class WorkerFailed(RuntimeError):
    """A worker of the group died or raised."""


@ray.remote
class DataParallelWorker(CollectiveMember):
    def __init__(self) -> None:
        self._events: deque[Progress] = deque()  # filled by training, drained by the driver

    def join(self, rank: int, peers: list) -> int:
        self.collective = RayCollective(rank, peers, self._mailbox())
        return rank

    def events(self) -> list[Progress]:
        return [self._events.popleft() for _ in range(len(self._events))]

    def train(self, spec: JobSpec, data) -> tuple[np.ndarray, object, str] | None:
        rank = self.collective.rank
        report = self._events.append if rank == 0 else None
        model, history = train_worker(spec, data, self.collective, report)
        return (model.get_flat(), history, model.device) if rank == 0 else None


class DataParallelMode:
    name = "data_parallel"
    needs_ray = True

    def run(self, spec: JobSpec, ctx: RunContext) -> RunResult:
        res = spec.resources
        ctx.say(f"placing {res.workers} workers")
        with WorkerGroup(DataParallelWorker, res.workers, res.cpus_per_worker, res.gpus_per_worker) as group:
            actors = group.actors
            ray.get([a.join.remote(i, actors) for i, a in enumerate(actors)])
            ctx.say(f"training on {res.workers} workers")
            data_ref = ray.put(ctx.data)  # one copy in the object store, read zero-copy by every worker
            refs = [a.train.remote(spec, data_ref) for a in actors]
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=0.2)
                for ref in done:
                    try:
                        ray.get(ref)  # raises at once if that worker failed
                    except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
                        raise WorkerFailed(f"data_parallel worker {refs.index(ref)} failed: {_cause(e)}") from None
                self._forward(actors[0], ctx)
                if ctx.should_stop is not None and ctx.should_stop():
                    raise Stopped()
            self._forward(actors[0], ctx)
            flat, history, device = ray.get(refs[0])
        return RunResult(flat, history, workers=res.workers, device=device)

    @staticmethod
    def _forward(rank0, ctx: RunContext) -> None:
        try:
            events = ray.get(rank0.events.remote(), timeout=10)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return
        if ctx.report is not None:
            for event in events:
                ctx.report(event)


def _cause(error: Exception) -> str:
    cause = getattr(error, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
