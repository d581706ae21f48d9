"""Greedy layer-wise pretraining, then supervised fine-tuning of the whole stack.

One loop serves every execution mode. A worker of rank r in a group of ``world`` takes its
contiguous share of each global batch and averages gradients through ``collective.allreduce``
(sum of gradients weighted by share). The batch order and the random numbers depend only on
(seed, phase, epoch, step), never on the number of workers or on where training resumed, so N
workers compute what one worker computes, and a run stopped at a checkpoint and resumed ends
where an uninterrupted run ends.

Training is a list of phases (one per pretrained layer, then fine-tuning), each of epochs of
steps. A :class:`TrainState` taken at a step boundary is everything needed to go on from there.
"""

from __future__ import annotations

import copy
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
    resumed_from: list[dict] = field(default_factory=list)  # one entry per resume: where it went on

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


@dataclass
class TrainState:
    """A step boundary: train from (phase, epoch, step) on with these parameters and optimiser state."""

    phase: int  # index into the run's phases: pretrained layers in order, then fine-tuning
    epoch: int  # 0-based epoch within the phase
    step: int  # next step to run within the epoch
    flat: np.ndarray
    velocity: np.ndarray  # the current phase's optimiser state
    epoch_loss: float  # sum of loss x rows so far in this epoch
    epoch_rows: int
    history: History

    @property
    def position(self) -> dict:
        return {"phase": self.phase, "epoch": self.epoch, "step": self.step, "samples": self.history.samples}


class Stopped(Exception):
    """Training stopped at a step boundary on request; ``state`` resumes it (None on other ranks)."""

    def __init__(self, state: TrainState | None = None):
        super().__init__("training stopped on request")
        self.state = state


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of an n-row batch that belong to ``rank``."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


@dataclass
class _Phase:
    name: str  # "pretrain" | "finetune"
    layer: int | None
    seed_phase: int
    settings: Any
    sl: slice  # the parameters this phase trains


def _phases(model: Model, pretrain, train) -> list[_Phase]:
    out = []
    if pretrain is not None and pretrain.epochs > 0:
        for i, module in enumerate(model.modules):
            if module.pretrainable:
                out.append(_Phase("pretrain", i, PRETRAIN_PHASE + i, pretrain, model.layout.module_slices[i]))
    out.append(_Phase("finetune", None, FINETUNE_PHASE, train, slice(0, model.layout.size)))
    return out


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
    resume: TrainState | None = None,
    on_checkpoint: Callable[[TrainState], None] | None = None,
    checkpoint_every: float = 60.0,
) -> History:
    """Pretrain every unsupervised module in order, then fine-tune the whole stack.

    ``should_stop`` is asked after every step; when any worker says yes, all stop after that
    same step and raise :class:`Stopped` carrying the state (on rank 0). ``on_checkpoint``
    (rank 0) receives a state at least every ``checkpoint_every`` seconds.
    """
    coll = collective or SingleWorker()
    rank, world = coll.rank, coll.world
    xp = model.xp
    x = backend.to_device(data.x_train, model.device)
    y = backend.to_device(data.y_train, model.device)
    n = int(y.shape[0])
    phases = _phases(model, pretrain, train)
    mask = model.layout.decay_mask(xp, model.flat.dtype)
    buf = xp.zeros(model.layout.size + 2, dtype=model.flat.dtype)  # [gradient, loss, stop]

    if resume is not None:
        model.set_flat(resume.flat)
        history = resume.history
        history.resumed_from.append(resume.position)
        start = (resume.phase, resume.epoch, resume.step)
    else:
        history = History()
        start = (0, 0, 0)
    coll.broadcast(model.flat, 0)  # every worker starts from rank 0's parameters
    t0 = time.perf_counter() - history.seconds
    last_report = last_checkpoint = time.perf_counter()

    for p, phase in enumerate(phases):
        if p < start[0]:
            continue
        s = phase.settings
        size = phase.sl.stop - phase.sl.start
        flat_p = model.flat[phase.sl]
        opt = SGD(s.learning_rate, s.momentum, s.weight_decay, mask[phase.sl])
        velocity = opt.init(flat_p)
        if p == start[0] and resume is not None:
            velocity[...] = xp.asarray(resume.velocity)
        module = model.modules[phase.layer] if phase.layer is not None else None
        h = model.transform(x, upto=phase.layer) if module is not None else x  # inputs of the layer, once
        steps = s.epochs * _steps_per_epoch(n, s.batch_size)
        first_epoch = start[1] if p == start[0] else 0
        for epoch in range(first_epoch, s.epochs):
            first_step = start[2] if (p, epoch) == start[:2] else 0
            if first_step and resume is not None:
                total_loss, seen = resume.epoch_loss, resume.epoch_rows
            else:
                total_loss, seen = 0.0, 0
            t_epoch, rows_at_start = time.perf_counter(), seen
            order = np.random.default_rng(backend.seed_of(seed, phase.seed_phase, epoch)).permutation(n)
            n_steps = _steps_per_epoch(n, s.batch_size)
            for step in range(first_step, n_steps):
                idx = order[step * s.batch_size : (step + 1) * s.batch_size]
                lo, hi = shard(len(idx), rank, world)
                weight = (hi - lo) / len(idx)
                if hi > lo:
                    rows = xp.asarray(idx[lo:hi])
                    rng = backend.RowRNG(backend.rng((seed, phase.seed_phase, epoch, step), model.device), lo, len(idx))
                    if module is not None:
                        grads, loss = module.pretrain_step(model.params[phase.layer], h[rows], rng)
                        model.layout.pack(phase.layer, grads, model.grad)
                        grad = model.grad[phase.sl]
                    else:
                        loss, grad = model.loss_and_grad(x[rows], y[rows], rng)
                    xp.multiply(grad, weight, out=buf[:size])
                    buf[size] = loss * weight
                else:
                    buf[: size + 1] = 0
                stop_here = should_stop is not None and should_stop()
                buf[size + 1] = 1.0 if stop_here else 0.0
                reduced = coll.allreduce(buf[: size + 2])
                updates, velocity = opt.update(reduced[:size], velocity, flat_p)
                apply_updates(flat_p, updates)
                total_loss += float(reduced[size]) * len(idx)
                seen += len(idx)
                history.samples += len(idx)
                if history.first_step_at is None:
                    history.first_step_at = time.time()
                now = time.perf_counter()
                done_in_phase = epoch * n_steps + step + 1
                rate = (seen - rows_at_start) / max(now - t_epoch, 1e-9)
                epoch_end = step == n_steps - 1
                if report is not None and not (phase.name == "finetune" and epoch_end) and (epoch_end or now - last_report >= 0.2):
                    last_report = now
                    report(Progress(phase.name, phase.layer, module.kind if module else None, epoch + 1, s.epochs, done_in_phase, steps, total_loss / seen, rate, epoch_end=epoch_end))
                stop = float(reduced[size + 1]) > 0
                if stop or (on_checkpoint is not None and now - last_checkpoint >= checkpoint_every):
                    history.seconds = now - t0
                    nxt = (p, epoch, step + 1) if not epoch_end else (p, epoch + 1, 0)
                    state = None
                    if stop and epoch_end:
                        _close_epoch(model, data, history, phase, epoch, total_loss / n, rank)
                    if rank == 0:
                        carried = (0.0, 0) if epoch_end else (total_loss, seen)
                        velocity_host = backend.to_host(velocity).copy()
                        state = TrainState(*nxt, model.get_flat(), velocity_host, *carried, copy.deepcopy(history))
                    if stop:
                        raise Stopped(state)
                    if on_checkpoint is not None and state is not None:
                        on_checkpoint(state)
                    last_checkpoint = now
            val = _close_epoch(model, data, history, phase, epoch, total_loss / n, rank)
            if report is not None and phase.name == "finetune":
                rate = (seen - rows_at_start) / max(time.perf_counter() - t_epoch, 1e-9)
                report(Progress("finetune", None, None, epoch + 1, s.epochs, (epoch + 1) * n_steps, steps, total_loss / n, rate, val, True))

    history.seconds = time.perf_counter() - t0
    return history


def _close_epoch(model: Model, data: Dataset, history: History, phase: _Phase, epoch: int, mean_loss: float, rank: int) -> float | None:
    """Record an epoch in the history; fine-tuning epochs are scored on the validation rows (rank 0)."""
    if phase.name == "pretrain":
        history.pretrain.append({"layer": phase.layer, "kind": model.modules[phase.layer].kind, "epoch": epoch + 1, "reconstruction_error": mean_loss})
        return None
    val = model.accuracy(data.x_val, data.y_val) if rank == 0 and len(data.y_val) else None
    history.finetune.append({"epoch": epoch + 1, "loss": mean_loss, "val_accuracy": val})
    return val
