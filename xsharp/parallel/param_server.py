"""Asynchronous parameter server: the flat parameters sharded over S server actors (contiguous
slices), W workers pushing gradients and pulling weights without waiting for one another.

A worker's step g, each on the whole of step g's batch::

    pull_wait   the weights asked for earlier (pull_req); blocks only until the servers hold
                every update step g needs
    compute     the gradient, on the worker's device
    push        one slice per server, fire and forget; a server applies its optimiser step to
                its slice the moment a push arrives
    pull_req    ask for the weights of this worker's next step (g + W); they travel while the
                worker waits for its next order

``staleness: k`` bounds what a step may miss: step g computes on weights holding every update
of steps before g - k. With k = 0 the steps are sequential SGD, so any number of workers
computes what local training computes (the servers add in another order nowhere). Without a
bound a worker still sees its own previous update.

The driver runs the one training loop (``algos.training.run_phases``) and hands out the steps
in order, round robin (step g to worker g mod W), up to 2W in flight. A stop, a checkpoint and
the end of an epoch wait for the steps in flight and read the servers once every pushed update
is applied, so states, validation scores and resumes are exact step boundaries.

Pretraining runs the same protocol on its phase's slice: workers push and pull only the servers
that the pretrained layer's parameters lie on. Every phase starts once the phase before is
fully applied, from a full pull, and each worker computes the layer's inputs then. Entries that
are state rather than trained (batch-norm running statistics) are not descended: a worker pushes
the change its forward pass made to them and the server adds it, so the servers keep one
running average fed by every worker.

Servers hold no reservation of their own (they use no CPU slot; an update per push is cheap
next to a gradient) and sit beside the workers in the workers' placement group.
"""

from __future__ import annotations

import asyncio
import bisect
from itertools import accumulate
from typing import Any

import numpy as np
import ray

from xsharp import backend
from xsharp.algos import Model
from xsharp.algos.optim import apply_updates
from xsharp.algos.training import ModelEngine, Phase, Step, prefetch_bytes
from xsharp.spec import JobSpec

from .execution import RunContext, RunResult, build_model, drive, host_plan
from .group import WorkerGroup, wait


def shard_bounds(size: int, servers: int) -> list[int]:
    """Server j holds flat entries ``bounds[j] .. bounds[j+1]``."""
    return [size * j // servers for j in range(servers + 1)]


def pieces(bounds: list[int], a: int, b: int) -> list[tuple[int, int, int]]:
    """``(server, lo, hi)`` for every server that entries [a, b) lie on."""
    out = []
    for j in range(len(bounds) - 1):
        lo, hi = max(a, bounds[j]), min(b, bounds[j + 1])
        if hi > lo:
            out.append((j, lo, hi))
    return out


def non_trainable_mask(model: Model) -> np.ndarray | None:
    """True over entries that are state, not trained (a module's ``non_trainable``); None if none."""
    mask = np.zeros(model.layout.size, dtype=bool)
    for e in model.layout.entries:
        if e.name in getattr(model.modules[e.module], "non_trainable", ()):
            mask[e.offset : e.offset + e.size] = True
    return mask if mask.any() else None


@ray.remote
class ParamShard:
    """Entries [lo, hi) of the flat parameters and their optimiser state.

    ``starts[p]`` is the first global step of phase p (the last entry: all steps). ``mark``:
    every step before it is applied here (or trains nothing on this shard)."""

    def __init__(self, lo: int, hi: int, flat: np.ndarray, decay: np.ndarray, frozen: np.ndarray | None, phases: list[Phase], starts: list[int]):
        backend.steady_heap()
        self.lo, self.hi = lo, hi
        self.flat = np.array(flat, dtype=np.float32)
        self.decay, self.frozen = decay, frozen
        self.phases, self.starts = phases, starts
        self.mark, self.ahead = 0, set()
        self.current: int | None = None
        self.opt: Any = None
        self.state: np.ndarray | None = None  # the current phase's optimiser state for this shard's part
        self._changed: asyncio.Condition | None = None  # made on the actor's event loop
        self._advance()  # past the phases that train nothing here

    def _local(self, p: int) -> slice | None:
        sl = self.phases[p].sl
        lo, hi = max(sl.start, self.lo), min(sl.stop, self.hi)
        return slice(lo - self.lo, hi - self.lo) if hi > lo else None

    def _phase_of(self, g: int) -> int:
        return bisect.bisect_right(self.starts, g) - 1

    def _advance(self) -> None:
        while self.mark < self.starts[-1]:
            if self.mark in self.ahead:
                self.ahead.discard(self.mark)
                self.mark += 1
            elif self._local(p := self._phase_of(self.mark)) is None:
                self.mark = self.starts[p + 1]  # a phase that trains nothing here
            else:
                return

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _until(self, ready, timeout: float = 300.0) -> None:
        """Wait for ``ready()``; a step that never comes (its worker died) ends in an error, not a hang."""
        changed = self._condition()
        async with changed:
            try:
                await asyncio.wait_for(changed.wait_for(ready), timeout)
            except TimeoutError:
                raise TimeoutError(f"server [{self.lo}, {self.hi}): updates stopped at step {self.mark} for {timeout:.0f} s") from None

    async def _moved(self) -> None:
        changed = self._condition()
        async with changed:
            changed.notify_all()

    async def begin(self, p: int, g: int, state: np.ndarray | None, resume: bool) -> None:
        """Phase p starts at global step g: after every step before it (a resume: they are in,
        and ``state`` is this shard's part of the optimiser state)."""
        if resume:
            self.mark, self.ahead = g, set()
            self._advance()
        else:
            await self._until(lambda: self.mark >= g)
        local = self._local(p)
        self.current = p
        self.opt = None if local is None else self.phases[p].optimizer(self.decay[local])
        self.state = None if local is None else self.opt.init(self.flat[local])
        if local is not None and state is not None:
            self.state[...] = state
        await self._moved()

    async def push(self, g: int, grad: np.ndarray) -> None:
        p = self._phase_of(g)
        assert p == self.current, f"step {g} of phase {p} pushed during phase {self.current}"
        local = self._local(p)
        params = self.flat[local]
        delta = None
        if self.frozen is not None and self.frozen[local].any():  # state, not trained: add the change
            kept = self.frozen[local]
            delta, grad = np.where(kept, grad, 0).astype(np.float32), np.where(kept, 0, grad).astype(np.float32)
        updates, self.state = self.opt.update(grad, self.state, params)
        apply_updates(params, updates)
        if delta is not None:
            params += delta
        self.ahead.add(g)
        self._advance()
        await self._moved()

    async def pull(self, need: int, own: int | None, lo: int, hi: int) -> np.ndarray:
        """Entries [lo, hi) once every step before ``need`` (and step ``own``) is applied."""
        await self._until(lambda: self.mark >= need and (own is None or own < self.mark or own in self.ahead))
        return self.flat[lo - self.lo : hi - self.lo].copy()

    async def snapshot(self, need: int) -> tuple[np.ndarray, np.ndarray | None]:
        await self._until(lambda: self.mark >= need)
        return self.flat.copy(), None if self.state is None else self.state.copy()

    def ping(self) -> bool:
        return True


@ray.remote
class ParamServerWorker:
    """Computes whole-batch gradients on its own copy of the model, refreshed from the servers."""

    def setup(self, spec: JobSpec, data, rank: int, world: int, shards: list, bounds: list[int], starts: list[int], staleness: int | None) -> str:
        self.model = build_model(spec, data, backend.resolve(spec.resources.device))
        self.engine = ModelEngine(
            self.model,
            data.x_train,
            data.y_train,
            stride=world,  # gathers step g + W's rows while g computes
            prefetch_bytes=prefetch_bytes(spec.data.prefetch),
        )
        self.world, self.shards, self.bounds, self.starts, self.staleness = world, shards, bounds, starts, staleness
        mask = non_trainable_mask(self.model)
        self.frozen = None if mask is None else np.flatnonzero(mask)
        self.grad = self.model.xp.zeros(self.model.layout.size, dtype=self.model.flat.dtype)
        self.index: int | None = None
        self.pending: tuple[int, list] | None = None  # (step, pull_req handle) asked ahead
        return self.model.device

    def pull_req(self, need: int, own: int | None, a: int, b: int) -> list:
        """Ask every server that [a, b) lies on; returns a handle for :meth:`pull_wait`."""
        return [(lo, hi, self.shards[j].pull.remote(need, own, lo, hi)) for j, lo, hi in pieces(self.bounds, a, b)]

    def pull_wait(self, handle: list) -> None:
        parts = ray.get([ref for _, _, ref in handle])
        for (lo, hi, _), part in zip(handle, parts):
            self.model.flat[lo:hi] = self.model.xp.asarray(part)

    def push(self, g: int, grad: Any, a: int, b: int) -> None:
        host = backend.to_host(grad)
        for j, lo, hi in pieces(self.bounds, a, b):
            self.shards[j].push.remote(g, host[lo - a : hi - a])  # serialised now: the buffer may change after

    def _need(self, g: int) -> int:
        start = self.starts[bisect.bisect_right(self.starts, g) - 1]
        return start if self.staleness is None else max(start, g - self.staleness)

    def step(self, step: Step, g: int) -> float:
        a, b = step.phase.sl.start, step.phase.sl.stop
        if step.index != self.index:  # a new phase: everything the phases before left, then its inputs
            self.pull_wait(self.pull_req(self.starts[step.index], None, 0, self.model.layout.size))
            self.engine.begin_phase(step.index, step.phase, None)
            self.index, self.pending = step.index, None
        if self.pending is not None and self.pending[0] == g:
            handle = self.pending[1]
        else:
            handle = self.pull_req(self._need(g), None, a, b)
        self.pull_wait(handle)
        frozen = None if self.frozen is None else self.frozen[(self.frozen >= a) & (self.frozen < b)]
        before = self.model.flat[frozen].copy() if frozen is not None and len(frozen) else None
        grad = self.grad[: b - a]
        loss = self.engine.gradient(step, 0, len(step.idx), grad)
        if before is not None:
            grad[frozen - a] = self.model.flat[frozen] - before
        self.push(g, grad, a, b)
        nxt = g + self.world
        in_phase = nxt < self.starts[step.index + 1]
        self.pending = (nxt, self.pull_req(self._need(nxt), g if self.staleness is None else None, a, b)) if in_phase else None
        return float(loss)


class ParamServerEngine:
    """The driver's side: numbers the steps, hands them out round robin, reads the servers."""

    rank = 0

    def __init__(self, workers: list, shards: list, bounds: list[int], starts: list[int], per_epoch: list[int], host: Model):
        self.workers, self.shards, self.bounds = workers, shards, bounds
        self.starts, self.per_epoch, self.host = starts, per_epoch, host
        self.depth = 2 * len(workers)
        self.inflight: dict = {}
        self.next_g = 0
        self.resumed = False
        self.phase = None
        self._begin: tuple | None = None

    def _watch(self) -> list:
        return list(self.inflight) + [s.ping.remote() for s in self.shards]

    def start(self, flat: np.ndarray | None) -> None:
        self.resumed = flat is not None  # the servers were built from it

    def begin_phase(self, index: int, phase: Phase, state: np.ndarray | None) -> None:
        self.phase, self._begin = phase, (index, state)  # told to the servers with the first step's number
        self.state_layout = phase.optimizer(None).state_layout

    def _crossed(self) -> list[tuple[int, int, int]]:
        return pieces(self.bounds, self.phase.sl.start, self.phase.sl.stop)

    def submit(self, step: Step) -> tuple[Any, bool]:
        g = self.starts[step.index] + step.epoch * self.per_epoch[step.index] + step.step
        if self._begin is not None:
            index, state = self._begin
            parts = dict.fromkeys(range(len(self.shards)))
            if state is not None:  # a resume: each shard its part of the optimiser state
                crossed = self._crossed()
                parts |= dict(zip([j for j, _, _ in crossed], self.state_layout.split(state, [hi - lo for _, lo, hi in crossed])))
            wait([s.begin.remote(index, g, parts[j], self.resumed) for j, s in enumerate(self.shards)], "parameter server", self._watch)
            self._begin, self.resumed = None, False
        ref = self.workers[g % len(self.workers)].step.remote(step, g)
        self.inflight[ref] = g
        self.next_g = g + 1
        return ref, step.stop

    def result(self, handle: tuple[Any, bool]) -> tuple[float, bool]:
        ref, stop = handle
        loss = wait(ref, f"param_server worker {self.inflight[ref] % len(self.workers)}", self._watch)
        del self.inflight[ref]
        return loss, stop

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        parts = wait([s.snapshot.remote(self.next_g) for s in self.shards], "parameter server", self._watch)
        crossed = self._crossed()
        state = self.state_layout.join([parts[j][1] for j, _, _ in crossed], [hi - lo for _, lo, hi in crossed])
        return np.concatenate([f for f, _ in parts]), state

    def validate(self, x: np.ndarray, y: np.ndarray) -> float | None:
        if not len(y):
            return None
        self.host.set_flat(self.snapshot()[0])
        return self.host.accuracy(x, y)

    def close(self) -> None:
        pass


class ParamServerMode:
    name = "param_server"
    needs_ray = True

    def run(self, spec: JobSpec, ctx: RunContext) -> RunResult:
        res, par, data = spec.resources, spec.parallel, ctx.data
        host, phases = host_plan(spec, ctx)
        per_epoch = [ph.steps_per_epoch for ph in phases]
        starts = list(accumulate([ph.settings.epochs * k for ph, k in zip(phases, per_epoch)], initial=0))
        servers = min(par.servers, host.layout.size)
        bounds = shard_bounds(host.layout.size, servers)
        decay, frozen, flat = host.layout.decay_mask(np, np.float32), non_trainable_mask(host), host.get_flat()
        ctx.say(f"placing {res.workers} workers and {servers} parameter servers")
        group = WorkerGroup(
            ParamServerWorker,
            res.workers,
            res.cpus_per_worker,
            res.gpus_per_worker,
            concurrency=1,
            placement_group=ctx.placement_group,
            memory_limit=ctx.memory_limit,
        )
        with group:
            args = []
            for j in range(servers):
                lo, hi = bounds[j], bounds[j + 1]
                args.append((lo, hi, flat[lo:hi], decay[lo:hi], None if frozen is None else frozen[lo:hi], phases, starts))
            shards = group.spawn(ParamShard, args, max_concurrency=1000)
            data_ref = ray.put(data)
            setups = [w.setup.remote(spec, data_ref, i, res.workers, shards, bounds, starts, par.staleness) for i, w in enumerate(group.actors)]
            devices = wait(setups, "param_server setup", lambda: [s.ping.remote() for s in shards])
            ctx.placed(group.actors + shards)
            staleness = "no staleness bound" if par.staleness is None else f"staleness {par.staleness}"
            ctx.say(f"training on {res.workers} workers, {servers} servers, {staleness}")
            engine = ParamServerEngine(group.actors, shards, bounds, starts, per_epoch, host)
            history = drive(engine, spec, ctx, phases)
            flat = engine.snapshot()[0]
        return RunResult(flat, history, workers=res.workers, device=devices[0], extra={"servers": servers, "staleness": par.staleness})
