"""Synchronous data parallel: N gang-placed worker actors, each on its share of every global
batch, gradients averaged every step by an allreduce (:mod:`.collective`: a ring through Ray,
shared memory on one node, or NCCL between GPUs, as ``parallel.collective`` says).

For the same seed and global batch it computes what local mode computes (see algos.training).
A stop request goes to rank 0; the stop flag rides in the allreduce, so every worker stops
after the same step and rank 0 hands back the state to resume from.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import ray

from xsharp.algos.training import Stopped, TrainHooks, TrainState
from xsharp.spec import JobSpec

from .collective import CollectiveMember, RayCollective
from .execution import RunContext, RunResult, train_worker
from .group import EventPoll, WorkerFailed, WorkerGroup, cause

__all__ = ["DataParallelMode", "DataParallelWorker", "WorkerFailed"]


@ray.remote
class DataParallelWorker(CollectiveMember):
    def __init__(self) -> None:
        self._events: deque = deque()  # ("progress", Progress) | ("checkpoint", TrainState); drained by the driver
        self._stop = threading.Event()

    def join(self, rank: int, peers: list, transport: str = "auto", overlap: bool = False, bucket_bytes: int = 1 << 20) -> int:
        self.collective = RayCollective(rank, peers, self._mailbox(), transport=transport, overlap=overlap, bucket_bytes=bucket_bytes)
        return rank

    def events(self) -> list[tuple[str, object]]:
        return [self._events.popleft() for _ in range(len(self._events))]

    def request_stop(self) -> None:
        self._stop.set()

    def train(self, spec: JobSpec, data, resume: TrainState | None, checkpoint_every: float) -> RunResult | TrainState | None:
        """Rank 0: the trained parameters, or the state to resume from after a stop; the other ranks: None."""
        rank0 = self.collective.rank == 0
        try:
            hooks = TrainHooks(
                report=(lambda e: self._events.append(("progress", e))) if rank0 else None,
                should_stop=self._stop.is_set,
                resume=resume,
                on_checkpoint=(lambda s: self._events.append(("checkpoint", s))) if rank0 else None,
                checkpoint_every=checkpoint_every,
            )
            model, history = train_worker(spec, data, self.collective, hooks)
        except Stopped as e:
            return e.state if rank0 else None
        return RunResult(model.get_flat(), history, workers=self.collective.world, device=model.device) if rank0 else None


class DataParallelMode:
    name = "data_parallel"
    needs_ray = True

    def run(self, spec: JobSpec, ctx: RunContext) -> RunResult:
        res = spec.resources
        ctx.say(f"placing {res.workers} workers")
        group = WorkerGroup(
            DataParallelWorker, res.workers, res.cpus_per_worker, res.gpus_per_worker, placement_group=ctx.placement_group, memory_limit=ctx.memory_limit
        )
        with group:
            actors = group.actors
            par = spec.parallel
            ray.get([a.join.remote(i, actors, par.collective, par.overlap, par.bucket_kb * 1024) for i, a in enumerate(actors)])
            ctx.placed(actors)
            ctx.say(f"training on {res.workers} workers")
            data_ref = ray.put(ctx.data)  # one copy in the object store, read zero-copy by every worker
            refs = [a.train.remote(spec, data_ref, ctx.resume, ctx.checkpoint_every) for a in actors]
            pending, stop_sent = list(refs), False
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=0.2)
                for ref in done:
                    try:
                        ray.get(ref)  # raises at once if that worker failed
                    except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
                        raise WorkerFailed(f"data_parallel worker {refs.index(ref)} failed: {cause(e)}") from None
                self._forward(actors[0], ctx, wait=False)
                if not stop_sent and ctx.should_stop is not None and ctx.should_stop():
                    actors[0].request_stop.remote()
                    stop_sent = True
            self._forward(actors[0], ctx, wait=True)  # a poll still out from the loop, if any ...
            self._forward(actors[0], ctx, wait=True)  # ... then one made after every worker returned
            outcome = ray.get(refs[0])
        if isinstance(outcome, TrainState):
            raise Stopped(outcome)
        return RunResult(np.asarray(outcome.flat), outcome.history, workers=res.workers, device=outcome.device)

    _events: EventPoll | None = None

    def _forward(self, rank0, ctx: RunContext, wait: bool) -> None:
        """Hand rank 0's progress and checkpoints to ``ctx`` (waiting up to 10 s with ``wait``,
        else 0.5 s; a poll not back yet is read on the next call)."""
        if self._events is None:
            self._events = EventPoll(rank0.events.remote)
        for kind, item in self._events.take(timeout=10 if wait else 0.5) or ():
            if kind == "progress" and ctx.report is not None:
                ctx.report(item)
            elif kind == "checkpoint" and ctx.on_checkpoint is not None:
                ctx.on_checkpoint(item)
