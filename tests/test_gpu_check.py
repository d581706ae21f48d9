"""scripts/gpu-check.sh end to end on the strict stand-in, as CI can: the script installs nothing it
lacks here, runs every section, and writes the summary, the report and the speed figures. On a
GPU machine the same script runs on CuPy (the README says how)."""

import json
import os
import subprocess
import sys

from tests.helpers import ROOT


def test_the_gpu_check_runs_every_section_and_writes_its_report(tmp_path):
    env = os.environ | {
        "OUT": str(tmp_path),
        "PYTHON": sys.executable,
        "XSHARP_GPU_STANDIN": "strict",
        "GPU_CHECK_SECONDS": "300",
        "GPU_CHECK_ARGS": "--only digits-mlp digits-elm.",
        "PERF_SCALE": "0.05",
        "PERF_REPEATS": "1",
        "GPU_CHECK_DEPS": str(tmp_path / "deps"),
    }
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh")], capture_output=True, text=True, env=env, timeout=280)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    status = {name: s["status"] for name, s in summary["sections"].items()}
    assert status == {"environment": "ok", "gradients": "ok", "nccl": "unavailable", "exporter": "unavailable", "recipes": "ok"}
    assert "stand-in" in summary["sections"]["environment"]["gpu"]
    assert summary["sections"]["gradients"]["largest"] == 0.0 and len(summary["sections"]["gradients"]["cases"]) >= 13
    recipes = summary["sections"]["recipes"]["recipes"]
    assert set(recipes) == {"digits-mlp", "digits-elm"} and all(r["points_apart"] == 0 for r in recipes.values())
    assert "| digits-mlp |" in (tmp_path / "report.md").read_text()
    perf = json.loads((tmp_path / "perf.json").read_text())
    assert set(perf["cases"]) == {"mlp", "rbm"} and all(c["gpu"]["median"] > 0 and c["cpu"]["median"] > 0 for c in perf["cases"].values())
