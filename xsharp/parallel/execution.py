"""The ExecutionMode interface: ``run(spec, ctx) -> RunResult``.

``ctx`` carries what a mode needs from outside: the data, the training hooks (progress
reports, a stop request, the state to resume from, checkpoints) and where to place workers.
Modes differ in how workers are laid out, never in model code: every worker trains through
:func:`train_worker`, or the driver runs the one loop over remote engines (:func:`drive`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from xsharp.algos import Model, fit
from xsharp.algos.datasets import Dataset
from xsharp.algos.training import NO_HOOKS, Collective, Engine, History, Phase, TrainHooks, plan, run_phases
from xsharp.backend import resolve
from xsharp.spec import MODES, JobSpec


@dataclass(kw_only=True)
class RunContext(TrainHooks):
    """A run's data and its hooks (report, should_stop, resume, on_checkpoint, checkpoint_every:
    see :class:`TrainHooks`), with what a mode needs to place its workers."""

    data: Dataset
    status: Callable[[str], None] | None = None  # one-line stage messages: "placing 2 workers"
    placement_group: Any = None  # a reservation made by the scheduler; modes place workers in it
    on_workers: Callable[[list], None] | None = None  # sees every actor of the group once placed (fault-injection tests)
    memory_limit: int | None = None  # bytes of heap each worker process may take (a service job's cap)

    def say(self, message: str) -> None:
        if self.status is not None:
            self.status(message)

    def placed(self, actors: list) -> None:
        if self.on_workers is not None:
            self.on_workers(list(actors))


@dataclass
class RunResult:
    flat: np.ndarray  # trained parameters, host copy
    history: History
    workers: int
    device: str
    extra: dict = field(default_factory=dict)


class ExecutionMode(Protocol):
    name: str
    needs_ray: bool

    def run(self, spec: JobSpec, ctx: RunContext) -> RunResult: ...


def build_model(spec: JobSpec, data: Dataset, device: str = "cpu") -> Model:
    return Model(spec.layers, data.in_shape, data.n_classes, seed=spec.seed, device=device, classes=data.classes)


def train_worker(
    spec: JobSpec,
    data: Dataset,
    collective: Collective | None = None,
    hooks: TrainHooks = NO_HOOKS,
) -> tuple[Model, History]:
    """What every worker of every mode does: build the model on its device and fit it
    (gathering batches ahead as ``data.prefetch`` says)."""
    model = build_model(spec, data, resolve(spec.resources.device))
    history = fit(
        model,
        data,
        pretrain=spec.pretrain,
        train=spec.train,
        seed=spec.seed,
        collective=collective,
        hooks=hooks,
        prefetch=spec.data.prefetch,
    )
    return model, history


def host_plan(spec: JobSpec, ctx: RunContext) -> tuple[Model, list[Phase]]:
    """For modes driven from here: a host copy of the model (the initial or resumed weights,
    the layout, validation) and the run's phases."""
    host = build_model(spec, ctx.data, "cpu")
    if ctx.resume is not None:
        host.set_flat(ctx.resume.flat)
    return host, plan(host.modules, host.layout, spec.pretrain, spec.train, len(ctx.data.y_train))


def drive(engine: Engine, spec: JobSpec, ctx: RunContext, phases: list[Phase]) -> History:
    """The one training loop, run here, each step handed to ``engine`` (remote workers)."""
    return run_phases(engine, ctx.data, phases, seed=spec.seed, hooks=ctx)


# Mode `data_parallel` is xsharp.parallel.data_parallel:DataParallelMode, and so on for each of spec.MODES.
_MODES = {name: f"xsharp.parallel.{name}:{name.title().replace('_', '')}Mode" for name in MODES}


class ModeUnavailable(RuntimeError):
    """A mode that runs on Ray, asked for where Ray cannot be imported."""


def get_mode(name: str) -> ExecutionMode:
    """The execution mode called ``name`` (imported on demand: local mode never imports Ray)."""
    try:
        module, cls = _MODES[name].split(":")
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; known: {', '.join(_MODES)}") from None
    try:
        return getattr(importlib.import_module(module), cls)()
    except ImportError as e:
        if e.name == "ray" or (e.name or "").startswith("ray.") or "ray" in str(e).lower():
            raise ModeUnavailable(
                f"mode {name} runs on Ray, which cannot be imported here ({e}): install it (pip install 'ray==2.60.0'), or run with --mode local"
            ) from None
        raise
