"""The GPU check: what ``scripts/gpu-check.sh`` runs on a machine with one GPU.

    python -m xsharp.gpu_check --out gpu-check [--budget 450] [--quick]

Sections, each timed, each written to ``OUT/summary.json`` and ``OUT/report.md`` as soon as it
ends (a check cut off by its time limit still leaves what it finished):

- **environment**: the GPU, CuPy, CUDA runtime and driver versions;
- **gradients**: every module's forward, gradients, pretraining step and ridge solve on CuPy
  against NumPy from the same numbers (:mod:`xsharp.device_check`), the largest relative
  difference of each;
- **recipes**: every digits and Fashion-MNIST recipe in ``examples/``, local mode, on the CPU
  and on the GPU, with epochs capped (``--epochs``) to fit the budget; test accuracies side by
  side, within 0.5 points asked;
- **nccl**: a one-rank NCCL communicator's allreduce on device memory (two ranks need two GPUs);
- **exporter**: the exporter's collector (NVML) against ``nvidia-smi`` read at the same moment,
  while a matrix product keeps the GPU busy.

Speed is ``bench/perf.py --device gpu --no-peers``, run by the shell script beside this.
Sections that need what the machine lacks (a driver, NCCL) say so and are marked ``unavailable``;
a section past the budget is marked ``skipped``. On a machine without a GPU, with
``XSHARP_GPU_STANDIN=strict``, everything but NCCL and the exporter runs on the strict stand-in:
the tests run it that way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from xsharp import backend
from xsharp.appliance.exporter import NodeCollector, registry_for
from xsharp.cluster.runner import run_job
from xsharp.device_check import check_modules
from xsharp.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
GRADIENT_TOLERANCE = 1e-3  # float32 on two devices: sums in another order, a few ulps per product
ACCURACY_POINTS = 0.5  # the issue's: GPU test accuracy within 0.5 points of the CPU's
RECIPES = ("digits-*.yaml", "fashion-mnist-*.yaml")
NOT_RECIPES = {
    "digits-search.yaml": "a search, not one run",
    "fashion-mnist-png-cnn.yaml": "reads a folder of PNGs made by scripts/fashion_mnist_pngs.py; the same network as fashion-mnist-cnn",
}


class Check:
    """The summary being written, section by section, under ``out``."""

    def __init__(self, out: Path, budget: float):
        self.out, self.budget, self.started = out, budget, time.monotonic()
        self.summary: dict[str, Any] = {"budget_seconds": budget, "sections": {}}
        out.mkdir(parents=True, exist_ok=True)

    @property
    def left(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    def section(self, name: str, run: Callable[[], dict], needs: float = 0.0) -> None:
        if self.left < needs:
            result = {"status": "skipped", "why": f"{self.left:.0f} s of the budget left, {needs:.0f} s needed"}
        else:
            t0 = time.monotonic()
            try:
                result = run()
            except Unavailable as e:
                result = {"status": "unavailable", "why": str(e)}
            except Exception as e:  # a section that fails reports it and the next one runs
                result = {"status": "error", "error": f"{type(e).__name__}: {e}"}
            result["seconds"] = round(time.monotonic() - t0, 1)
        self.summary["sections"][name] = result
        self.write()

    def write(self) -> None:
        self.summary["seconds"] = round(time.monotonic() - self.started, 1)
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=2, default=float) + "\n")
        (self.out / "report.md").write_text(render(self.summary))


class Unavailable(RuntimeError):
    """What the section needs is not on this machine."""


# --------------------------------------------------------------------------- sections
def environment() -> dict:
    xp = backend.xp("gpu")
    facts: dict[str, Any] = {"status": "ok", "python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count()}
    if xp.__name__ == "xsharp.strict_xp":
        facts["gpu"] = "the strict stand-in (xsharp.strict_xp): NumPy under CuPy's rules, no GPU"
        return facts
    props = xp.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    facts |= {
        "gpu": name.decode() if isinstance(name, bytes) else str(name),
        "gpu_memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "cupy": xp.__version__,
        "cuda_runtime": xp.cuda.runtime.runtimeGetVersion(),
        "cuda_driver": xp.cuda.runtime.driverGetVersion(),
    }
    return facts


def gradients() -> dict:
    cases = {c.name: {"largest": c.largest, "worst": max(c.differences, key=c.differences.get)} for c in check_modules("gpu")}
    worst = max(v["largest"] for v in cases.values())
    return {"status": "ok" if worst <= GRADIENT_TOLERANCE else "failed", "tolerance": GRADIENT_TOLERANCE, "largest": worst, "cases": cases}


def recipe_paths() -> list[Path]:
    paths = sorted({p for pattern in RECIPES for p in (ROOT / "examples").glob(pattern)})
    return [p for p in paths if p.name not in NOT_RECIPES]


def shortened(raw: dict, epochs: int | None, limit: int | None) -> tuple[dict, list[str]]:
    """The recipe with epochs capped at ``epochs`` (None: as written) and rows at ``limit``, in
    local mode; and what changed."""
    spec, changes = json.loads(json.dumps(raw)), []
    spec["mode"] = "local"
    spec.pop("resources", None)
    for phase in ("pretrain", "train"):
        part = spec.get(phase) or {}
        if epochs is not None and part.get("epochs", 0) > epochs:
            changes.append(f"{phase}.epochs {part['epochs']} -> {epochs}")
            part["epochs"] = epochs
    if limit is not None:
        spec.setdefault("data", {})["limit"] = limit
        changes.append(f"data.limit {limit}")
    return spec, changes


def recipes(check: Check, epochs: dict[str, int | None], limit: int | None, only: list[str] | None) -> dict:
    """``epochs``: the cap per data set (the recipe file's first word), None for none."""
    rows: dict[str, Any] = {}
    worst = 0.0
    for path in recipe_paths():
        if only and not any(path.name.startswith(o) for o in only):
            continue
        if check.left < 20:
            rows[path.stem] = {"status": "skipped", "why": "time budget spent"}
            continue
        spec, changes = shortened(yaml.safe_load(path.read_text()), epochs.get(path.name.split("-")[0]), limit)
        row: dict[str, Any] = {"shortened": changes}
        try:
            for device in ("cpu", "gpu"):
                spec.setdefault("resources", {})["device"] = device
                t0 = time.monotonic()
                result = run_job(parse_spec(spec, source=str(path)))
                row[device] = {"test_accuracy": result.metrics["test_accuracy"], "seconds": round(time.monotonic() - t0, 1)}
            gap = abs(row["gpu"]["test_accuracy"] - row["cpu"]["test_accuracy"]) * 100
            row |= {"points_apart": round(gap, 2), "status": "ok" if gap <= ACCURACY_POINTS else "failed"}
            worst = max(worst, gap)
        except Exception as e:
            row |= {"status": "error", "error": f"{type(e).__name__}: {e}"}
        rows[path.stem] = row
        check.summary["sections"]["recipes"] = {"status": "running", "epochs_cap": _caps(epochs), "points_allowed": ACCURACY_POINTS, "recipes": rows}
        check.write()
    statuses = {r["status"] for r in rows.values()}
    status = "failed" if statuses & {"failed", "error"} else ("partial" if "skipped" in statuses else "ok")
    return {
        "status": status,
        "epochs_cap": _caps(epochs),
        "points_allowed": ACCURACY_POINTS,
        "largest_points_apart": round(worst, 2),
        "not_run": NOT_RECIPES,
        "recipes": rows,
    }


def _caps(epochs: dict[str, int | None]) -> str:
    return ", ".join(f"{name} {cap if cap is not None else 'as written'}" for name, cap in epochs.items())


def nccl() -> dict:
    xp = backend.xp("gpu")
    try:
        from cupy.cuda import nccl as lib
    except Exception as e:
        raise Unavailable(f"cupy.cuda.nccl does not import ({type(e).__name__}: {e})") from None
    comm = lib.NcclCommunicator(1, lib.get_unique_id(), 0)
    buf = xp.arange(1 << 20, dtype=xp.float32)
    out = xp.empty_like(buf)
    stream = xp.cuda.get_current_stream()
    comm.allReduce(buf.data.ptr, out.data.ptr, buf.size, lib.NCCL_FLOAT32, lib.NCCL_SUM, stream.ptr)
    stream.synchronize()
    same = bool(xp.array_equal(out, buf))
    return {
        "status": "ok" if same else "failed",
        "nccl_version": lib.get_version(),
        "ranks": 1,
        "allreduce_equal": same,
        "note": "one GPU: a one-rank communicator; traffic between ranks needs two GPUs",
    }


SMI_FIELDS = {  # nvidia-smi --query-gpu field -> the exporter's metric
    "utilization.gpu": "DCGM_FI_DEV_GPU_UTIL",
    "memory.used": "DCGM_FI_DEV_FB_USED",
    "temperature.gpu": "DCGM_FI_DEV_GPU_TEMP",
    "power.draw": "DCGM_FI_DEV_POWER_USAGE",
}


def exporter() -> dict:
    if shutil.which("nvidia-smi") is None:
        raise Unavailable("no nvidia-smi on this machine")
    try:
        import pynvml
    except ImportError:
        raise Unavailable("nvidia-ml-py (pynvml) is not installed") from None
    xp = backend.xp("gpu")
    busy = threading.Event()

    def load() -> None:  # keep the GPU busy so that utilisation and power read something
        a = xp.ones((4096, 4096), dtype=xp.float32)
        while not busy.is_set():
            a = a @ a
            a /= 4096
            xp.cuda.get_current_stream().synchronize()

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    collector = NodeCollector(pynvml)
    samples = []
    try:
        time.sleep(2.0)
        registry = registry_for(collector)
        for _ in range(3):
            query = ",".join(SMI_FIELDS)
            smi = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits", "-i", "0"], capture_output=True, text=True, timeout=20)
            text = generate_latest(registry).decode()
            ours = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if s.labels.get("gpu", "0") == "0"}
            theirs = dict(zip(SMI_FIELDS, (v.strip() for v in smi.stdout.strip().splitlines()[0].split(","))))
            samples.append({field: {"nvidia_smi": _number(theirs.get(field)), "exporter": ours.get(metric)} for field, metric in SMI_FIELDS.items()})
            time.sleep(1.0)
    finally:
        busy.set()
        worker.join(timeout=10)
        collector.close()
    agree = all(
        s[f]["exporter"] is not None and s[f]["nvidia_smi"] is not None and abs(s[f]["exporter"] - s[f]["nvidia_smi"]) <= _allowed(f, s[f]["nvidia_smi"])
        for s in samples
        for f in SMI_FIELDS
    )
    return {
        "status": "ok" if agree else "failed",
        "samples": samples,
        "allowed": "utilisation 15 points, memory 64 MiB, temperature 2 C, power 10 % (the two read a moment apart)",
    }


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _allowed(field: str, value: float) -> float:
    return {"utilization.gpu": 15.0, "memory.used": 64.0, "temperature.gpu": 2.0}.get(field, 0.1 * abs(value) + 5.0)


# --------------------------------------------------------------------------- the report
def render(summary: dict) -> str:
    lines = ["# xsharp GPU check", "", f"Ran {summary.get('seconds', 0):.0f} s of a {summary['budget_seconds']:.0f} s budget.", ""]
    for name, result in summary["sections"].items():
        lines.append(f"## {name}: {result.get('status')} ({result.get('seconds', 0)} s)")
        if "why" in result or "error" in result:
            lines.append(f"- {result.get('why') or result.get('error')}")
        if name == "environment":
            lines += [f"- {k}: {v}" for k, v in result.items() if k not in ("status", "seconds")]
        elif name == "gradients" and "cases" in result:
            lines.append(f"Largest relative difference, CuPy against NumPy (float32; tolerance {result['tolerance']:g}):")
            lines += [f"- {case}: {v['largest']:.2e} ({v['worst']})" for case, v in result["cases"].items()]
        elif name == "recipes" and "recipes" in result:
            lines.append(f"Test accuracy, local mode, epochs capped: {result['epochs_cap']} (allowed gap {result['points_allowed']} points):")
            lines.append("")
            lines.append("| recipe | CPU | GPU | points apart | CPU s | GPU s | shortened |")
            lines.append("|---|---|---|---|---|---|---|")
            for recipe, r in result["recipes"].items():
                if "gpu" in r:
                    lines.append(
                        f"| {recipe} | {r['cpu']['test_accuracy']:.4f} | {r['gpu']['test_accuracy']:.4f} | {r['points_apart']} | "
                        f"{r['cpu']['seconds']} | {r['gpu']['seconds']} | {'; '.join(r['shortened']) or '-'} |"
                    )
                else:
                    lines.append(f"| {recipe} | {r['status']}: {r.get('why') or r.get('error')} | | | | | |")
        elif name == "exporter" and "samples" in result:
            for i, s in enumerate(result["samples"]):
                lines.append(f"- reading {i + 1}: " + ", ".join(f"{f} smi {v['nvidia_smi']} / exporter {v['exporter']}" for f, v in s.items()))
        elif name == "nccl" and "nccl_version" in result:
            lines.append(f"- NCCL {result['nccl_version']}, {result['ranks']} rank, allreduce equal: {result['allreduce_equal']}; {result['note']}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-check"), help="where summary.json and report.md go ($OUT, else ./gpu-check)"
    )
    parser.add_argument("--budget", type=float, default=330.0, help="seconds for these sections (the speed bench runs after, in the shell script)")
    parser.add_argument("--epochs", type=int, default=2, help="cap on the Fashion-MNIST recipes' pretraining and training epochs")
    parser.add_argument("--digits-epochs", type=int, help="cap on the digits recipes' epochs (default: as written; they take seconds)")
    parser.add_argument("--limit", type=int, help="cap on every recipe's rows (data.limit)")
    parser.add_argument("--only", nargs="+", help="recipes whose file name starts with one of these")
    opts = parser.parse_args(argv)
    try:
        backend.resolve("gpu")
    except backend.DeviceError as e:
        raise SystemExit(f"gpu-check: {e}") from None
    check = Check(opts.out, opts.budget)
    check.section("environment", environment)
    check.section("gradients", gradients)
    check.section("nccl", nccl)
    check.section("exporter", exporter, needs=15)
    caps = {"digits": opts.digits_epochs, "fashion": opts.epochs}
    check.section("recipes", lambda: recipes(check, caps, opts.limit, opts.only), needs=20)
    failed = [n for n, r in check.summary["sections"].items() if r["status"] in ("failed", "error")]
    print(render(check.summary))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
