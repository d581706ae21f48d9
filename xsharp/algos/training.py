"""Greedy layer-wise pretraining, then supervised fine-tuning of the whole stack.

One loop serves every execution mode. A worker of rank r in a group of ``world`` takes its
contiguous share of each global batch and averages gradients through ``collective.allreduce``
(sum of gradients weighted by share). The batch order and the random numbers depend only on
the seed, never on the number of workers, so N workers compute what one worker computes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from xsharp import backend

from .datasets import Dataset
from .model import Model
from .optim import SGD, apply_updates

PRETRAIN_PHASE = 1000  # seed namespaces: pretraining layer i uses PRETRAIN_PHASE + i
FINETUNE_PHASE = 1


class PhaseSettings(Protocol):
    epochs: int
    batch_size: int
    learning_rate: float
    momentum: float
    weight_decay: float


class Collective(Protocol):
    rank: int
    world: int

    def allreduce(self, buf: Any) -> Any: ...

    def broadcast(self, buf: Any, root: int = 0) -> Any: ...


class SingleWorker:
    """The collective of a group of one: nothing to exchange."""

    rank, world = 0, 1

    def allreduce(self, buf):
        return buf

    def broadcast(self, buf, root=0):
        return buf


class Stopped(Exception):
    """Training was asked to stop (Ctrl-C, a stop or pause request)."""


@dataclass
class Progress:
    phase: str  # "pretrain" or "finetune"
    layer: int | None  # module index while pretraining
    layer_kind: str | None
    epoch: int  # 1-based
    epochs: int
    step: int  # steps done in this phase, 1-based
    steps: int  # steps in this phase
    loss: float  # mean of the epoch so far: reconstruction error or NLL
    samples_per_second: float
    val_accuracy: float | None = None  # at the end of a fine-tuning epoch
    epoch_end: bool = False


@dataclass
class History:
    pretrain: list[dict] = field(default_factory=list)
    finetune: list[dict] = field(default_factory=list)
    samples: int = 0
    seconds: float = 0.0
    first_step_at: float | None = None  # wall clock (time.time()) when the first step finished

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of an n-row batch that belong to ``rank``."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _batches(n: int, batch_size: int, seed: int, phase: int, epoch: int):
    order = np.random.default_rng(backend.seed_of(seed, phase, epoch)).permutation(n)
    for step, start in enumerate(range(0, n, batch_size)):
        yield step, order[start : start + batch_size]


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


class _Loop:
    """Shared machinery of one training run: reduce buffers, reporting, counters."""

    def __init__(self, model: Model, collective: Collective, report, should_stop, history: History):
        self.model, self.coll, self.report, self.should_stop, self.history = model, collective, report, should_stop, history
        self.xp = model.xp
        self.buf = self.xp.zeros(model.layout.size + 1, dtype=model.flat.dtype)
        self.last_report = 0.0

    def reduce(self, grad: Any | None, loss: float, weight: float, size: int) -> tuple[Any, float]:
        """Allreduce ``weight * [grad, loss]``; returns the averaged gradient view and loss."""
        buf = self.buf[: size + 1]
        if grad is None:
            buf[...] = 0
        else:
            self.xp.multiply(grad, weight, out=buf[:size])
            buf[size] = loss * weight
        buf = self.coll.allreduce(buf)
        return buf[:size], float(buf[size])

    def after_step(self, samples: int) -> None:
        self.history.samples += samples
        if self.history.first_step_at is None:
            self.history.first_step_at = time.time()
        if self.should_stop is not None and self.should_stop():
            raise Stopped()

    def maybe_report(self, event: Progress, force: bool = False) -> None:
        now = time.perf_counter()
        if self.report is not None and (force or now - self.last_report >= 0.2):
            self.last_report = now
            self.report(event)


def fit(
    model: Model,
    data: Dataset,
    *,
    pretrain: PhaseSettings | None,
    train: PhaseSettings,
    seed: int = 0,
    collective: Collective | None = None,
    report: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> History:
    """Pretrain every unsupervised module in order, then fine-tune the whole stack."""
    coll = collective or SingleWorker()
    rank, world = coll.rank, coll.world
    history = History()
    loop = _Loop(model, coll, report, should_stop, history)
    xp = model.xp
    x = backend.to_device(data.x_train, model.device)
    y = backend.to_device(data.y_train, model.device)
    n = int(y.shape[0])
    t0 = time.perf_counter()

    coll.broadcast(model.flat, 0)  # every worker starts from rank 0's parameters

    # ---------------------------------------------------------------- pretraining
    pretrain_layers = [i for i, m in enumerate(model.modules) if m.pretrainable]
    if pretrain is not None and pretrain.epochs > 0:
        for i in pretrain_layers:
            module, sl = model.modules[i], model.layout.module_slices[i]
            size = sl.stop - sl.start
            params, flat_i = model.params[i], model.flat[sl]
            h = model.transform(x, upto=i)  # inputs of layer i, computed once
            opt = SGD(pretrain.learning_rate, pretrain.momentum, pretrain.weight_decay, model.layout.decay_mask(xp, model.flat.dtype)[sl])
            state = opt.init(flat_i)
            steps = pretrain.epochs * _steps_per_epoch(n, pretrain.batch_size)
            done, phase = 0, PRETRAIN_PHASE + i
            for epoch in range(pretrain.epochs):
                total_err, seen, t_epoch = 0.0, 0, time.perf_counter()
                for step, idx in _batches(n, pretrain.batch_size, seed, phase, epoch):
                    lo, hi = shard(len(idx), rank, world)
                    grad = None
                    err = 0.0
                    if hi > lo:
                        rows = xp.asarray(idx[lo:hi])
                        rng = backend.RowRNG(backend.rng((seed, phase, epoch, step), model.device), lo, len(idx))
                        grads, err = module.pretrain_step(params, h[rows], rng)
                        model.layout.pack(i, grads, model.grad)
                        grad = model.grad[sl]
                    g, err = loop.reduce(grad, err, (hi - lo) / len(idx), size)
                    updates, state = opt.update(g, state, flat_i)
                    apply_updates(flat_i, updates)
                    total_err += err * len(idx)
                    seen += len(idx)
                    done += 1
                    loop.after_step(len(idx))
                    rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
                    end = seen == n
                    event = Progress("pretrain", i, module.kind, epoch + 1, pretrain.epochs, done, steps, total_err / seen, rate, epoch_end=end)
                    loop.maybe_report(event, force=end)
                history.pretrain.append({"layer": i, "kind": module.kind, "epoch": epoch + 1, "reconstruction_error": total_err / n})

    # ---------------------------------------------------------------- fine-tuning
    size = model.layout.size
    opt = SGD(train.learning_rate, train.momentum, train.weight_decay, model.layout.decay_mask(xp, model.flat.dtype))
    state = opt.init(model.flat)
    steps = train.epochs * _steps_per_epoch(n, train.batch_size)
    done = 0
    for epoch in range(train.epochs):
        total_loss, seen, t_epoch = 0.0, 0, time.perf_counter()
        for step, idx in _batches(n, train.batch_size, seed, FINETUNE_PHASE, epoch):
            lo, hi = shard(len(idx), rank, world)
            grad, loss = None, 0.0
            if hi > lo:
                rows = xp.asarray(idx[lo:hi])
                rng = backend.RowRNG(backend.rng((seed, FINETUNE_PHASE, epoch, step), model.device), lo, len(idx))
                loss, grad = model.loss_and_grad(x[rows], y[rows], rng)
            g, loss = loop.reduce(grad, loss, (hi - lo) / len(idx), size)
            updates, state = opt.update(g, state, model.flat)
            apply_updates(model.flat, updates)
            total_loss += loss * len(idx)
            seen += len(idx)
            done += 1
            loop.after_step(len(idx))
            if seen < n:
                rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
                loop.maybe_report(Progress("finetune", None, None, epoch + 1, train.epochs, done, steps, total_loss / seen, rate))
        rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
        val = model.accuracy(data.x_val, data.y_val) if rank == 0 and len(data.y_val) else None
        history.finetune.append({"epoch": epoch + 1, "loss": total_loss / n, "val_accuracy": val})
        loop.maybe_report(Progress("finetune", None, None, epoch + 1, train.epochs, done, steps, total_loss / n, rate, val, True), force=True)

    history.seconds = time.perf_counter() - t0
    return history
