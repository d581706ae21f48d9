"""The one training loop: :func:`run_phases` walks the phases, epochs and steps, keeps the loss,
the progress reports, the checkpoints and the stop requests, and hands each step to an engine.
:func:`fit` runs it on this worker's model; :func:`train` is the notebook's entry point."""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..datasets import Dataset
from ..model import Model
from .collective import Collective, SingleWorker
from .engine import Engine, ModelEngine
from .phases import Phase, Step, plan
from .prefetch import PREFETCH_KB, prefetch_bytes
from .records import NO_HOOKS, History, Progress, Stopped, TrainHooks, TrainState
from .settings import PhaseSettings, PretrainSpec, TrainSpec


def fit(
    model: Model,
    data: Dataset,
    *,
    pretrain: PhaseSettings | None,
    train: PhaseSettings,
    seed: int = 0,
    collective: Collective | None = None,
    hooks: TrainHooks = NO_HOOKS,
    prefetch: int = PREFETCH_KB,
) -> History:
    """Pretrain every unsupervised module in order, then fine-tune the whole stack.

    ``hooks.should_stop`` is asked before every step; when any worker says yes, all stop after
    that same step and raise :class:`Stopped` carrying the state (on rank 0).
    ``hooks.on_checkpoint`` (rank 0) receives a state at least every ``hooks.checkpoint_every``
    seconds; ``hooks.resume`` goes on from a state. ``prefetch``: the
    rows of the next batch are gathered on a background thread while this one computes, for
    batches of at least this many KiB (0: never); the numbers are the same either way.
    """
    coll = collective or SingleWorker()
    stream = data.train.stream(train.batch_size, seed, coll.rank, coll.world) if getattr(data, "train", None) is not None else None
    engine = ModelEngine(model, data.x_train, data.y_train, collective, prefetch_bytes=prefetch_bytes(prefetch), stream=stream)
    phases = plan(model.modules, model.layout, pretrain, train, data.n_train)
    history = run_phases(engine, data, phases, seed=seed, hooks=hooks)
    history.prefetched += engine.fetch.hits  # (a resumed history goes on counting)
    return history


def train(
    model: Model,
    data: Dataset,
    *,
    pretrain: PretrainSpec | None = None,
    seed: int = 0,
    report: Callable[[Progress], None] | None = None,
    prefetch: int = PREFETCH_KB,
    **settings: Any,
) -> History:
    """Train ``model`` on ``data``'s training rows in this process: the notebook's entry point.

    ``settings`` are the fine-tuning phase's, by name, as a job spec's ``train`` section holds
    them (:class:`TrainSpec`: ``epochs``, ``batch_size``, ``learning_rate``, ``momentum``,
    ``weight_decay``, ``optimizer``, ``schedule`` ...); bad ones raise ``ValueError`` naming
    the field. ``pretrain`` (a :class:`PretrainSpec`) turns on greedy layer-wise pretraining of
    the unsupervised modules first. ``report`` sees a :class:`Progress` as training goes.
    The trained parameters are in ``model``; the history of losses and validation accuracies
    comes back.

        history = train(model, data, epochs=10, batch_size=32, learning_rate=0.1)
    """
    return fit(model, data, pretrain=pretrain, train=TrainSpec(**settings), seed=seed, hooks=TrainHooks(report=report), prefetch=prefetch)


def run_phases(
    engine: Engine,
    data: Dataset,
    phases: list[Phase],
    *,
    seed: int = 0,
    hooks: TrainHooks = NO_HOOKS,
) -> History:
    """Run ``phases`` step by step through ``engine`` (see :func:`fit`).

    Up to ``engine.depth`` steps are in flight; their results are taken in order. A stop or a
    checkpoint waits for the steps in flight, so a state is always at a step boundary, and no
    step of the next epoch starts before the epoch is scored."""
    n = int(data.n_train)
    report, should_stop, resume = hooks.report, hooks.should_stop, hooks.resume
    on_checkpoint, checkpoint_every = hooks.on_checkpoint, hooks.checkpoint_every
    try:
        if resume is not None:
            history = resume.history
            history.resumed_from.append(resume.position)
            start = (resume.phase, resume.epoch, resume.step)
        else:
            history = History()
            start = (0, 0, 0)
        engine.start(resume.flat if resume is not None else None)
        t0 = time.perf_counter() - history.seconds
        last_report = last_checkpoint = time.perf_counter()

        for p, phase in enumerate(phases):
            if p < start[0]:
                continue
            s = phase.settings
            engine.begin_phase(p, phase, resume.optimizer_state if (p == start[0] and resume is not None) else None)
            n_steps = phase.steps_per_epoch
            steps = s.epochs * n_steps
            first_epoch = start[1] if p == start[0] else 0
            for epoch in range(first_epoch, s.epochs):
                first_step = start[2] if (p, epoch) == start[:2] else 0
                if first_step and resume is not None:
                    total_loss, seen = resume.epoch_loss, resume.epoch_rows
                else:
                    total_loss, seen = 0.0, 0
                t_epoch, rows_at_start = time.perf_counter(), seen
                inflight: deque = deque()
                nxt, halt, save = first_step, False, False
                while nxt < n_steps or inflight:
                    if nxt < n_steps and not (halt or save) and len(inflight) < engine.depth:
                        stop_here = should_stop is not None and should_stop()
                        step = Step(p, phase, epoch, nxt, seed, stop_here)
                        inflight.append((nxt, step.size, engine.submit(step)))
                        nxt += 1
                        continue
                    done, rows, handle = inflight.popleft()
                    loss, stop = engine.result(handle)
                    total_loss += loss * rows
                    seen += rows
                    history.samples += rows
                    if history.first_step_at is None:
                        history.first_step_at = time.time()
                    now = time.perf_counter()
                    rate = (seen - rows_at_start) / max(now - t_epoch, 1e-9)
                    epoch_end = done == n_steps - 1
                    if report is not None and not (phase.name == "finetune" and epoch_end) and (epoch_end or now - last_report >= 0.2):
                        last_report = now
                        report(
                            Progress(
                                phase.name,
                                phase.layer,
                                phase.kind,
                                epoch + 1,
                                s.epochs,
                                epoch * n_steps + done + 1,
                                steps,
                                total_loss / seen,
                                rate,
                                epoch_end=epoch_end,
                            )
                        )
                    halt = halt or stop
                    save = save or (on_checkpoint is not None and now - last_checkpoint >= checkpoint_every)
                    if (halt or save) and not inflight:  # at a step boundary: nothing in flight
                        history.seconds = now - t0
                        position = (p, epoch, done + 1) if not epoch_end else (p, epoch + 1, 0)
                        state = None
                        if halt and epoch_end:
                            _close_epoch(engine, data, history, phase, epoch, total_loss / n)
                        if engine.rank == 0:
                            carried = (0.0, 0) if epoch_end else (total_loss, seen)
                            state = TrainState(*position, *engine.snapshot(), *carried, copy.deepcopy(history))
                        if halt:
                            raise Stopped(state)
                        if on_checkpoint is not None and state is not None:
                            on_checkpoint(state)
                        last_checkpoint, save = now, False
                val = _close_epoch(engine, data, history, phase, epoch, total_loss / n)
                if report is not None and phase.name == "finetune":
                    rate = (seen - rows_at_start) / max(time.perf_counter() - t_epoch, 1e-9)
                    report(Progress("finetune", None, None, epoch + 1, s.epochs, (epoch + 1) * n_steps, steps, total_loss / n, rate, val, True))

        history.seconds = time.perf_counter() - t0
        return history
    finally:
        engine.close()


def _close_epoch(engine: Engine, data: Dataset, history: History, phase: Phase, epoch: int, mean_loss: float) -> float | None:
    """Record an epoch in the history; fine-tuning epochs are scored on the validation rows (rank 0)."""
    if phase.name == "pretrain":
        history.pretrain.append({"layer": phase.layer, "kind": phase.kind, "epoch": epoch + 1, "reconstruction_error": mean_loss})
        return None
    val = engine.validate(data.x_val, data.y_val)
    history.finetune.append({"epoch": epoch + 1, "loss": mean_loss, "val_accuracy": val})
    return val
