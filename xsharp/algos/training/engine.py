"""Engines: how a step's gradient is computed and applied; the loop (``run_phases``) does
everything else. :class:`ModelEngine` serves local and data-parallel training: a worker of rank
r in a group of ``world`` takes its contiguous share of each global batch and sums weighted
gradients through ``collective.allreduce``. The parallel modes bring engines of their own
(parameter server, pipeline stages), driven by the same loop.

A module trained in closed form (``solvable``: the ELM readouts) gets a *solve* phase: one
epoch whose steps add the layer's ``statistics`` of their rows (summed over workers by the same
allreduce) into the phase's state, and whose last step ``solve``s. The accumulated sums stand
where an optimiser state stands, so checkpoints and resumes inside the pass carry them. Its
loss is the solve's residual, counted at the last step.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from xsharp import backend

from ..model import Model
from ..optim import apply_updates
from .collective import Collective, OverlappedAllreduce, SingleWorker
from .phases import Phase, Step, shard
from .prefetch import PREFETCH_BYTES, Prefetcher


class Engine(Protocol):
    """How a step's gradient is computed and applied; :func:`run_phases` does everything else."""

    rank: int  # rank 0 takes checkpoint states and scores validation
    depth: int  # steps in flight at most; 1 is synchronous

    def start(self, flat: np.ndarray | None) -> None:
        """Begin from ``flat`` (a resume) or from the initial parameters; all workers agree."""

    def begin_phase(self, index: int, phase: Phase, optimizer_state: np.ndarray | None) -> None: ...

    def submit(self, step: Step) -> Any:
        """Start the step; a handle for :meth:`result`."""

    def result(self, handle: Any) -> tuple[float, bool]:
        """The step's mean loss over its global batch, and whether to stop after it."""

    def validate(self, x: np.ndarray, y: np.ndarray) -> float | None: ...

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Host copies of all parameters and of the current phase's optimiser state."""

    def close(self) -> None: ...


def loss_and_stop(pair: Any) -> tuple[float, bool]:
    """A step's [loss, stop] read off the device in one copy: on a GPU the step's one wait."""
    loss, stop = backend.to_host(pair).tolist()
    return loss, stop > 0


class ModelEngine:
    """Local and data-parallel training: this worker's share of every batch on its own copy of
    the model, the weighted gradients (with the loss and the stop flag) summed by the collective,
    then the same optimiser step on every worker.

    ``stride``: the step this worker computes after step s is s + stride (the next batch is
    gathered ahead while s computes, for batches of at least ``prefetch_bytes``; None: never).
    ``stream``: the training rows come from an imported
    dataset's shards (``xsharp.data.stream``) instead of ``x`` and ``y`` in memory; a
    pretraining or solve phase then passes each batch through the layers below as it comes."""

    depth = 1
    overlap = True  # subclasses whose fine-tuning gradient does not come from loss_and_grad turn it off
    reducer: OverlappedAllreduce | None = None  # fine-tuning sends its gradient during the backward pass
    buckets: dict[int, slice] | None = None  # the reducer's ranges of ``buf``, by the module that completes each

    def __init__(
        self,
        model: Model,
        x: Any,
        y: Any,
        collective: Collective | None = None,
        *,
        stride: int = 1,
        prefetch_bytes: int | None = PREFETCH_BYTES,
        stream: Any = None,
    ):
        backend.steady_heap()  # batch-sized temporaries reused, not mapped afresh each step
        self.model, self.xp = model, model.xp
        self.coll = collective or SingleWorker()
        self.rank, self.world = self.coll.rank, self.coll.world
        self.x = backend.to_device(x, model.device) if x is not None else None
        self.y = backend.to_device(y, model.device) if y is not None else None
        self.mask = model.layout.decay_mask(self.xp, model.flat.dtype)
        self.buf = self.xp.zeros(model.layout.size + 2, dtype=model.flat.dtype)  # [gradient, loss, stop]
        self.stride = stride
        self.fetch = Prefetcher(prefetch_bytes)
        self.stream = stream

    def start(self, flat: np.ndarray | None) -> None:
        if flat is not None:
            self.model.set_flat(flat)
        self.coll.broadcast(self.model.flat, 0)  # every worker starts from rank 0's parameters

    def begin_phase(self, index: int, phase: Phase, optimizer_state: np.ndarray | None) -> None:
        if phase.solve:
            return self.begin_solve(phase, optimizer_state)
        model = self.model
        self.phase, self.sl = phase, phase.sl
        self.size = phase.sl.stop - phase.sl.start
        self.flat_p = model.flat[phase.sl]
        self.opt = phase.optimizer(self.mask[phase.sl])
        self.optimizer_state = self.opt.init(self.flat_p)
        if optimizer_state is not None:
            self.optimizer_state[...] = self.xp.asarray(optimizer_state)
        self.module = model.modules[phase.layer] if phase.layer is not None else None
        if self.stream is not None:
            pass  # batches come from the stream
        elif self.module is not None:
            self.fetch.source(model.transform(self.x, upto=phase.layer))  # inputs of the layer, once
        else:
            self.fetch.source(self.x, self.y)
        whole = self.module is None and self.size == model.layout.size  # fine-tuning, by loss_and_grad, on the host
        self.reducer = self.coll.overlapped() if self.overlap and whole and backend.to_host(self.buf) is self.buf else None
        self.buckets = None if self.reducer is None else self.reducer.buckets(model.layout.module_slices, self.size + 2, self.buf.itemsize)

    def rows(self, step: Step) -> tuple[int, int]:
        return shard(step.size, self.rank, self.world)

    def batch(self, step: Step, lo: int, hi: int) -> tuple:
        """This worker's rows of the step, gathered ahead when it pays; the next one is started."""
        if self.stream is not None:
            return self.streamed(step, hi - lo)
        got = self.fetch.get(step.key, step.idx[lo:hi])
        nxt = step.ahead(self.stride)
        if nxt is not None:
            nlo, nhi = self.rows(nxt)
            if nhi > nlo:
                self.fetch.ahead(nxt.key, nxt.idx[nlo:nhi])
        return got

    def streamed(self, step: Step, count: int) -> tuple:
        """This worker's ``count`` rows of the step from the stream, on the device; a layer's
        inputs (pretraining, solving) are passed through the layers below it."""
        phase = step.phase
        rows = self.stream.batch(phase.seed_phase, step.epoch, step.step, count, phase.settings.batch_size)
        x = backend.to_device(rows.x, self.model.device)
        if phase.layer is not None:
            x = self.model.transform(x, upto=phase.layer)
            return (x, backend.to_device(rows.y, self.model.device)) if phase.solve else (x,)
        return x, backend.to_device(rows.y, self.model.device)

    def gradient(self, step: Step, lo: int, hi: int, out: Any) -> Any:
        """The gradient of rows [lo, hi) of the step's batch, weighted by their share, into
        ``out``; returns the loss weighted the same way (fine-tuning's stays on the device)."""
        weight = (hi - lo) / step.size
        rng = step.rng(self.model.device, lo)
        if self.module is not None:
            (h,) = self.batch(step, lo, hi)
            layer = self.phase.layer
            grads, loss = self.module.pretrain_step(self.model.params[layer], h, rng)
            self.model.layout.pack(layer, grads, self.model.grad)
            grad = self.model.grad[self.sl]
        else:
            x, y = self.batch(step, lo, hi)
            whole = out.shape[0] == self.model.layout.size
            loss, grad = self.model.loss_and_grad(x, y, rng, out=out if whole else None)  # straight into out: no copy
        if grad is not out:
            self.xp.multiply(grad, weight, out=out)
        elif weight != 1.0:
            out *= weight
        return loss * weight

    def begin_solve(self, phase: Phase, stats: np.ndarray | None) -> None:
        """A solve phase: its state (``self.optimizer_state``) is the statistics summed so far."""
        model, layer = self.model, phase.layer
        self.phase, self.sl, self.opt = phase, phase.sl, None
        self.module = model.modules[layer]
        size = self.module.statistics_size(model.params[layer])
        self.optimizer_state = self.xp.zeros(size, dtype=model.flat.dtype) if stats is None else self.xp.asarray(stats, dtype=model.flat.dtype).copy()
        self.stats_buf = self.xp.zeros(size + 1, dtype=model.flat.dtype)  # [statistics, stop]
        if self.stream is None:
            self.fetch.source(model.transform(self.x, upto=layer), self.y)  # inputs of the layer, once; labels for elm

    def solve_step(self, step: Step) -> tuple[float, bool]:
        """Add this step's statistics (every worker's rows) to the sums; the last step solves."""
        layer, buf = self.phase.layer, self.stats_buf
        params, size = self.model.params[layer], buf.shape[0] - 1
        lo, hi = self.rows(step)
        if hi > lo:
            x, y = self.batch(step, lo, hi)
            buf[:size] = self.module.statistics(params, x, y)
        else:
            buf[:size] = 0
        buf[size] = 1.0 if step.stop else 0.0
        reduced = self.coll.allreduce(buf)
        self.optimizer_state += reduced[:size]
        loss = 0.0
        if step.step == self.phase.steps_per_epoch - 1:  # every row is in: solve, on every worker alike
            solved, error = self.module.solve(params, self.optimizer_state)
            for name, value in solved.items():
                params[name][...] = value  # views into the flat buffer
            loss = error * self.phase.rows / step.size  # the loop weighs a step's loss by its rows
        return loss, bool(backend.to_host(reduced[size : size + 1])[0] > 0)

    def submit(self, step: Step) -> tuple[float, bool]:
        if self.phase.solve:
            return self.solve_step(step)
        if self.reducer is not None:
            return self.submit_overlapped(step)
        size, buf = self.size, self.buf
        lo, hi = self.rows(step)
        if hi > lo:
            buf[size] = self.gradient(step, lo, hi, buf[:size])
        else:
            buf[: size + 1] = 0
        buf[size + 1] = 1.0 if step.stop else 0.0
        reduced = self.coll.allreduce(buf[: size + 2])
        self.apply(reduced[:size])
        return loss_and_stop(reduced[size : size + 2])

    def submit_overlapped(self, step: Step) -> tuple[float, bool]:
        """``submit`` for fine-tuning where the collective overlaps: each bucket's sum starts as
        soon as the backward pass has filled it, on the reducer's thread, while earlier layers
        compute. Per element the same products and sums as ``submit``: the same result."""
        size, buf, reducer, buckets = self.size, self.buf, self.reducer, self.buckets
        lo, hi = self.rows(step)
        weight = (hi - lo) / step.size

        def packed(m: int, loss: float) -> None:
            part = buckets.get(m)
            if part is None:  # module m's gradient travels in the bucket of a module below it
                return
            end = part.stop
            if end > size:  # the first bucket carries the loss and the stop flag
                buf[size], buf[size + 1] = loss * weight, 1.0 if step.stop else 0.0
                end = size
            if weight != 1.0:
                buf[part.start : end] *= weight
            reducer.send(buf[part])

        if hi > lo:
            x, y = self.batch(step, lo, hi)
            self.model.loss_and_grad(x, y, step.rng(self.model.device, lo), out=buf[:size], packed=packed)
        else:  # no rows here: zeros, sent in the same buckets as every other worker's
            buf[:size] = 0
            for m in range(len(self.model.modules) - 1, -1, -1):
                packed(m, 0.0)
        reducer.wait()
        self.apply(buf[:size])
        return loss_and_stop(buf[size : size + 2])

    def apply(self, grad: Any) -> None:
        updates, self.optimizer_state = self.opt.update(grad, self.optimizer_state, self.flat_p)
        apply_updates(self.flat_p, updates)

    def result(self, handle: tuple[float, bool]) -> tuple[float, bool]:
        return handle

    def validate(self, x: Any, y: Any) -> float | None:
        return self.model.accuracy(x, y) if self.rank == 0 and len(x) else None

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        return self.model.get_flat(), backend.to_host(self.optimizer_state).copy()

    def close(self) -> None:
        self.fetch.close()
        if self.stream is not None:
            self.stream.close()
