"""`xsharp run`: train a job spec here, in local mode or on a Ray cluster."""

from __future__ import annotations

import json
import os
import sys
import time
from enum import Enum
from pathlib import Path

import typer
from rich.table import Table

from xsharp import backend
from xsharp.cluster.runner import run_job
from xsharp.cluster.runtime import RuntimeConnectError
from xsharp.parallel.collective import CollectiveError
from xsharp.parallel.execution import ModeUnavailable
from xsharp.searchspec import is_search
from xsharp.spec import MODES, parse_spec, read_spec_file

from .common import EXIT_BAD_INPUT, EXIT_FAILED, Output, err, fail, out, unclipped
from .progress import TrainingProgress
from .run_search import run_search_cli
from .spec_overrides import SET_HELP, apply_sets
from .user_errors import user_errors

RUNS = Path("runs")  # where runs are saved when --out is not given, as searches are
ARTIFACTS = "model.npz, spec.yaml, metrics.json"


Mode = Enum("Mode", {name: name for name in MODES}, type=str)  # --mode's choices: spec.MODES


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


def run(
    spec_file: Path = typer.Argument(..., metavar="SPEC.yaml", help="The job spec (see `xsharp spec schema`)."),
    mode: Mode | None = typer.Option(None, "--mode", "-m", help="Execution mode; overrides the spec's `mode`."),
    workers: int | None = typer.Option(
        None, "--workers", "-w", min=1, help="Worker actors (replicas, parameter-server workers, or pipeline stages x groups); overrides `resources.workers`."
    ),
    device: DeviceChoice | None = typer.Option(None, "--device", "-d", help="auto (GPU if CuPy sees one), cpu or gpu; overrides `resources.device`."),
    out_dir: Path | None = typer.Option(
        None,
        "--out",
        help="Save model.npz, spec.yaml and metrics.json here (replacing a run already there). "
        "Default: runs/NAME (NAME: the spec's name), or runs/NAME-2, -3, ... when runs/NAME already holds a run: a rerun never overwrites an earlier one.",
    ),
    no_save: bool = typer.Option(False, "--no-save", help="Save nothing: print the metrics only."),
    sets: list[str] | None = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
    address: str | None = typer.Option(
        None, "--address", envvar="XSHARP_RAY_ADDRESS", help="Ray cluster to join (host:port); default: start an embedded local Ray."
    ),
    output: Output = typer.Option(Output.text, "--output", "-o", help="text: progress and a summary; json: the metrics as JSON on stdout."),
    max_restarts: int | None = typer.Option(
        None,
        "--max-restarts",
        min=0,
        help="Restart the worker group from its last checkpoint this many times when a worker dies; overrides `parallel.max_restarts`.",
    ),
) -> None:
    """Train a model from SPEC.yaml and report test accuracy and throughput.

    A spec with ranges, grids or `auto` in place of numbers is a hyper-parameter search: its trials run in parallel on Ray and the results (search.json, search.png, the best model) go to --out (default runs/NAME); rerun it to finish an interrupted search without redoing finished trials.

    Local mode trains in this process. The other modes start (or join, with --address) a Ray cluster and gang-place the workers: data_parallel averages gradients every step, param_server shards the parameters over server actors that workers push to and pull from asynchronously, pipeline cuts the model into stages, hybrid runs data-parallel groups of pipelines. Progress goes to stderr; the summary (or JSON with -o json) to stdout. Exit code 2 means bad input (spec, data, resources), 1 a failed run.

    The model is saved to runs/NAME unless --out or --no-save says otherwise; the summary says where.

    Example: xsharp run examples/digits-dbn.yaml --mode data_parallel --workers 2 --set train.epochs=5
    """
    started = time.time()
    overrides: dict = {}
    if mode is not None:
        overrides["mode"] = mode.value
        if mode is Mode.local and workers is None:
            overrides["resources.workers"] = 1
    if workers is not None:
        overrides["resources.workers"] = workers
    if device is not None:
        overrides["resources.device"] = device.value
    if max_restarts is not None:
        overrides["parallel.max_restarts"] = max_restarts

    with user_errors():
        raw = apply_sets(read_spec_file(spec_file, overrides), sets, str(spec_file))
        if is_search(raw):
            if no_save:
                raise fail("--no-save: a search keeps its trials in a folder so that a rerun resumes it; give --out DIR or leave the default runs/NAME")
            return run_search_cli(raw, out_dir, address, output, started)
        spec = parse_spec(raw, str(spec_file))
        replacing, claimed = False, None
        if no_save:
            if out_dir is not None:
                raise fail("--no-save and --out: pick one (--no-save saves nothing)")
        elif out_dir is None:
            out_dir = free_run_dir(RUNS / spec.name)  # claimed: a run started beside this one picks another folder
            claimed = out_dir / CLAIM
        else:
            if any((out_dir / name).resolve() == spec_file.resolve() for name in ("spec.yaml", "metrics.json", "model.npz")):
                raise fail(f"--out {out_dir}: saving there would overwrite {spec_file} itself; choose another folder")
            replacing = (out_dir / "model.npz").is_file() or (out_dir / "metrics.json").is_file()
        try:
            backend.resolve(spec.resources.device)
        except backend.DeviceError as e:
            raise fail(str(e)) from None
        progress = TrainingProgress(err)
        stack = " -> ".join(next(iter(m)) for m in spec.layers)
        err.print(f"[bold]{spec.name}[/]: {stack}, mode {spec.mode}, {spec.resources.workers} worker(s)")
        try:
            with progress:
                result = run_job(spec, out_dir=out_dir, address=address, report=progress, status=progress.status, started_at=started)
        except Exception as e:
            _exit_for(e)
            raise
        finally:
            if claimed is not None:
                claimed.unlink(missing_ok=True)  # the run is there now, or its checkpoints for a rerun to go on from

    m = result.metrics
    saved = f"saved to {result.out_dir} ({ARTIFACTS})" + (", replacing the run that was there" if replacing else "") if result.out_dir is not None else None
    if output is Output.json:
        out.print_json(json.dumps(m))
        if saved:
            err.print(saved, markup=False)  # stdout stays one JSON document
        return
    table = Table(title=f"{spec.name} finished", show_header=False, title_justify="left")
    table.add_row("test accuracy", f"{100 * m['test_accuracy']:.2f} %")
    if m["val_accuracy"] is not None:
        table.add_row("validation accuracy", f"{100 * m['val_accuracy']:.2f} %")
    table.add_row("mode", f"{m['mode']} ({m['workers']} worker{'s' if m['workers'] > 1 else ''}, {m['device']})")
    if m.get("stage_memory"):
        table.add_row("parameters per stage", ", ".join(f"{_size(s['parameter_bytes'])} ({'+'.join(s['modules'])})" for s in m["stage_memory"]))
    if m.get("restarts"):
        table.add_row("restarts", f"{m['restarts']} (from {', '.join(str(r['samples']) for r in m['resumed_from'])} samples)")
    table.add_row("training time", f"{m['train_seconds']:.2f} s ({m['samples']:,} samples, {m['samples_per_second']:,.0f} samples/s)")
    if m["seconds_to_first_step"] is not None:
        table.add_row("first training step after", f"{m['seconds_to_first_step']:.2f} s")
    table.add_row("total time", f"{m['total_seconds']:.2f} s")
    out.print(unclipped(table, keep=24))
    if saved:
        out.print(saved, markup=False)


CLAIM = ".running"  # in a default run folder while its run goes on: created exclusively, so two runs never share one


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run or a search (anything but the checkpoints an interrupted run leaves)."""
    try:
        return folder.is_dir() and any(p.name not in ("checkpoints", CLAIM) for p in folder.iterdir())
    except OSError:
        return False


def free_run_dir(base: Path) -> Path:
    """``base`` (runs/NAME) if it holds no run yet, else the first free ``base-2``, ``base-3``, ...;
    claimed with an exclusively created :data:`CLAIM` file (the caller removes it)."""
    n, candidate = 1, base
    while True:
        if not holds_run(candidate) and not (os.path.lexists(candidate) and not candidate.is_dir()):
            try:
                candidate.mkdir(parents=True, exist_ok=True)
                os.close(os.open(candidate / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                return candidate
            except FileExistsError:  # another run claimed it first (or a killed one left its claim): the next
                pass
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.2f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KiB"


def _exit_for(error: Exception) -> None:
    """Known runtime failures become a message and an exit code; anything else propagates."""
    if isinstance(error, RuntimeConnectError):
        raise fail(str(error), EXIT_FAILED) from None
    if isinstance(error, ModeUnavailable):
        raise fail(str(error), EXIT_BAD_INPUT) from None
    if "ray" not in sys.modules:  # the errors below come from Ray modes only
        return
    # these modules import ray: imported here, once a Ray mode has, so that local mode never does
    from xsharp.parallel.data_parallel import WorkerFailed
    from xsharp.parallel.group import PlacementError

    if isinstance(error, PlacementError):
        raise fail(str(error), EXIT_BAD_INPUT) from None
    if isinstance(error, (WorkerFailed, CollectiveError)):
        raise fail(str(error), EXIT_FAILED) from None
