"""Run one job end to end: load data, train in the spec's execution mode, evaluate on the
held-out test split. :func:`execute` is that path for every caller (``xsharp run`` through
:func:`run_job`, a server job or a search trial through a JobRunner actor); the callers differ
only at the edges: where events go, which files and datasets a job may read, Ray, artifacts.

With ``parallel.max_restarts`` > 0 a Ray mode checkpoints every ``parallel.checkpoint_every``
seconds (under ``OUT/checkpoints``, or a temporary folder), and when a worker dies the whole
worker group starts again from the newest checkpoint that verifies, at most that many times.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from xsharp import backend
from xsharp.algos import Model, datasets, features
from xsharp.algos.datasets import Dataset
from xsharp.algos.model import count_parameters
from xsharp.algos.modules import CLASS_OPTIONS, build, with_classes
from xsharp.algos.training import Progress
from xsharp.data import imported
from xsharp.data.catalog import Catalog, local_owner
from xsharp.fileguard import ANYWHERE, FileGuard
from xsharp.parallel import ExecutionMode, RunContext, RunResult, get_mode
from xsharp.parallel.collective import CollectiveError
from xsharp.parallel.execution import build_model
from xsharp.spec import JobSpec, SpecError, parse_spec

from . import checkpoint, runtime
from .results import Done


@dataclass
class JobResult:
    """What ``xsharp run`` gets back: the trained model, its metrics and where they were saved."""

    model: Model
    metrics: dict
    out_dir: Path | None


def load_data(spec: JobSpec, guard: FileGuard = ANYWHERE, catalog: Catalog | None = None, user: str | None = None) -> Dataset:
    """The spec's data, split, with its ``features`` fitted on the training rows (``data.pipeline``).
    ``guard``: which files a path may reach (default: any, as the user running it); ``catalog``
    and ``user``: where an imported dataset is found (default: this machine's, as its login)."""
    d = spec.data
    device = "gpu" if spec.resources.device != "cpu" and backend.gpu_count() > 0 else "cpu"
    if d.dataset is not None and d.dataset not in datasets.NAMED:  # an imported dataset
        return imported.load(
            d.dataset,
            catalog or Catalog.local(),
            user or local_owner(),
            mode=spec.mode,
            stream=d.stream,
            limit=d.limit,
            features=d.features,
            augment=d.augment,
            seed=spec.seed,
            device=device,
        )
    data = datasets.load(
        d.dataset,
        d.path,
        d.format,
        test_fraction=d.test_fraction,
        validation_fraction=d.validation_fraction,
        limit=d.limit,
        seed=spec.seed,
        test_speakers=d.test_speakers,
        labels=d.labels,
        sample_rate=d.sample_rate,
        duration=d.duration,
        label_column=d.label_column,
        text_column=d.text_column,
        size=d.size,
        resize=d.resize,
        channels=d.channels,
        feature_columns=d.feature_columns,
        skip_bad=d.skip_bad,
        guard=guard,
    )
    return features.prepare(data, d.features, d.augment, seed=spec.seed, sample_rate=d.sample_rate, device=device)


def pin_dataset(spec: JobSpec, data: Dataset) -> JobSpec:
    """The spec with an imported dataset named as exactly what it read (``OWNER/NAME@VERSION``),
    so the saved spec.yaml and metrics say which version the model was trained on."""
    d = spec.data.dataset
    if d is None or d in datasets.NAMED or data.name == d:
        return spec
    raw = spec.to_dict()
    raw["data"]["dataset"] = data.name
    return parse_spec(raw, spec.name)


def check_against_data(spec: JobSpec, data: Dataset, max_parameters: int | None = None) -> None:
    """What the spec cannot know until the data is loaded: class count, layer shapes and (with
    ``max_parameters``, a server's cap) the model's size, before anything is allocated."""
    shape = data.in_shape
    for i, layer in enumerate(spec.layers):
        ((kind, options),) = layer.items()
        per_class = CLASS_OPTIONS.get(kind)  # softmax.units, elm.outputs
        if per_class is not None and options.get(per_class, data.n_classes) != data.n_classes:
            raise SpecError([f"model[{i}].{kind}.{per_class}: the data has {data.n_classes} classes, got {options[per_class]}"], spec.name)
        try:
            shape = build(kind, with_classes(kind, options, data.n_classes)).output_shape(shape)
        except ValueError as e:  # a window larger than its input, say
            raise SpecError([f"model[{i}].{kind}: {e} (input shape {tuple(shape)})"], spec.name) from None
    if max_parameters is not None:
        n = count_parameters(spec.layers, data.in_shape, data.n_classes)
        if n > max_parameters:
            raise SpecError(
                [f"model: {n:,} parameters on input {tuple(data.in_shape)}, over this server's cap of {max_parameters:,} (xsharp server --max-parameters)"],
                spec.name,
            )


def execute(
    spec: JobSpec,
    load: Callable[[JobSpec], Dataset],
    context: Callable[[Dataset], RunContext],
    *,
    max_parameters: int | None = None,
    connect: Callable[[], AbstractContextManager] | None = None,
    max_restarts: int = 0,
    checkpoints: Path | None = None,
    started_at: float | None = None,
) -> Done:
    """Train ``spec`` once, the same way from the CLI, a server job and a search trial: load the
    data (``load``), pin an imported dataset, check the spec against the data (and the parameter
    cap ``max_parameters``), run it in its mode with the hooks of ``context(data)``, and summarise.

    ``connect``: entered around a Ray mode's run (the CLI's embedded or joined Ray). With
    ``max_restarts`` a Ray mode checkpoints (under ``checkpoints``, or a temporary folder) and a
    dead worker restarts the group from the newest checkpoint. A stop request raises
    :class:`~xsharp.algos.training.Stopped` with the state to resume from."""
    data = load(spec)
    spec = pin_dataset(spec, data)
    check_against_data(spec, data, max_parameters)
    mode = get_mode(spec.mode)
    ctx = context(data)
    with connect() if connect is not None and mode.needs_ray else contextlib.nullcontext():
        if max_restarts and mode.needs_ray:
            result = _run_restarting(mode, spec, ctx, max_restarts, checkpoints)
        else:
            result = mode.run(spec, ctx)
    return summarize(spec, data, result, started_at)


def run_job(
    spec: JobSpec,
    *,
    out_dir: str | Path | None = None,
    address: str | None = None,
    report: Callable[[Progress], None] | None = None,
    status: Callable[[str], None] | None = None,
    started_at: float | None = None,
    max_restarts: int | None = None,
    on_workers: Callable[[list], None] | None = None,
) -> JobResult:
    """``xsharp run``: train ``spec`` here (a Ray mode on an embedded Ray, or the one at
    ``address``), save the artifacts to ``out_dir`` and return the model and its metrics.
    ``started_at`` (wall clock) is when the user asked, so ``seconds_to_first_step`` includes
    start-up. ``max_restarts`` overrides ``parallel.max_restarts``; ``on_workers`` sees each
    worker group's actors."""
    started_at = started_at or time.time()
    say = status or (lambda message: None)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    def connect() -> AbstractContextManager:
        return _ray_session(address, say)

    say(f"loading data ({spec.data.dataset or spec.data.path})")
    done = execute(
        spec,
        load_data,
        lambda data: RunContext(data=data, report=report, status=say, on_workers=on_workers),
        connect=connect,
        max_restarts=spec.parallel.max_restarts if max_restarts is None else max_restarts,
        checkpoints=out / "checkpoints" if out is not None else None,
        started_at=started_at,
    )
    if out is not None:
        done.save(out)
    return JobResult(done.model(), done.metrics, out)


@contextlib.contextmanager
def _ray_session(address: str | None, say: Callable[[str], None]) -> Iterator[None]:
    """The CLI's Ray for one run: joined at ``address``, or embedded and shut down after."""
    with runtime.connect(address) as info:
        kind = "embedded" if info.embedded else "cluster at"
        say(f"Ray {kind} {info.address}: {info.cpus:g} CPU, {info.gpus:g} GPU")
        yield


def _run_restarting(mode: ExecutionMode, spec: JobSpec, ctx: RunContext, max_restarts: int, directory: Path | None) -> RunResult:
    """``mode.run`` with checkpoints; a dead worker restarts the group from the newest one."""
    from xsharp.parallel.group import WorkerFailed  # group imports ray: local mode never reaches here

    with contextlib.ExitStack() as stack:
        if directory is not None:
            for old in directory.glob(checkpoint.PATTERN):  # another run's states are not this run's
                old.unlink()
        else:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xsharp-checkpoints-")))
        ctx.on_checkpoint = lambda state: checkpoint.save(directory, state)
        ctx.checkpoint_every = spec.parallel.checkpoint_every
        for attempt in range(max_restarts + 1):
            try:
                result = mode.run(spec, ctx)
                result.extra["restarts"] = attempt
                return result
            except (WorkerFailed, CollectiveError) as e:
                if attempt == max_restarts:
                    raise
                found = checkpoint.load_latest(directory)
                ctx.resume = found[0] if found else None
                where = f"checkpoint {found[1].name} at {found[0].position}" if found else "the start (no checkpoint yet)"
                ctx.say(f"{e}; restarting the worker group ({attempt + 1}/{max_restarts}) from {where}")
    raise AssertionError("unreachable: the last attempt returns or raises")


def summarize(spec: JobSpec, data: Dataset, result: RunResult, started_at: float | None = None) -> Done:
    """The trained model (built here once, on the host) and the job's metrics, test accuracy included."""
    model = build_model(spec, data, "cpu")
    model.set_flat(result.flat)
    model.pipeline = data.pipeline  # saved in model.npz so predict transforms raw rows the same way
    history = result.history
    metrics = {
        "job": spec.name,
        "mode": spec.mode,
        "workers": result.workers,
        "device": result.device,
        "dataset": repr(data),
        "data": data.name,  # an imported dataset: OWNER/NAME@VERSION
        "parameters": model.layout.size,
        "test_accuracy": model.accuracy(data.x_test, data.y_test),
        "val_accuracy": history.finetune[-1]["val_accuracy"] if history.finetune else None,
        "train_seconds": history.seconds,
        "samples_per_second": history.samples_per_second,
        "samples": history.samples,
        "seconds_to_first_step": (history.first_step_at - started_at) if history.first_step_at and started_at else None,
        "total_seconds": time.time() - started_at if started_at else None,
        "resumed_from": history.resumed_from,
        "pretrain": history.pretrain,
        "finetune": history.finetune,
    }
    metrics.update(result.extra)  # what a mode adds: servers, stages and their memory, restarts
    return Done(spec.to_dict(), metrics, result.flat, tuple(data.in_shape), data.n_classes, data.classes, data.pipeline, built=model)
