"""Local mode needs no Ray. `xsharp run --mode local`, `xsharp predict` and
`xsharp export` run in a process where importing `ray` fails, as on a machine without it; a
mode that needs Ray says so in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import NO_RAY, ROOT, TINY

XSHARP = str(Path(sys.executable).with_name("xsharp"))


def without_ray(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_RAY, XSHARP, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_local_training_prediction_and_export_never_import_ray(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY | {"mode": "local"}))
    r = without_ray("run", str(spec), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "model.npz").is_file()
    r = without_ray("predict", str(tmp_path / "run"), "--data", "digits", cwd=tmp_path)
    assert r.returncode == 0 and "accuracy:" in r.stdout, r.stderr
    r = without_ray("export", str(tmp_path / "run"), "--out", str(tmp_path / "m.onnx"), cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "m.onnx").is_file(), r.stderr
    probe = tmp_path / "probe.py"
    probe.write_text("import xsharp.algos, xsharp.spec, xsharp.serving.predictor, xsharp.export.onnx, xsharp.data.rows\n")
    r = subprocess.run([sys.executable, "-c", NO_RAY, str(probe)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_a_mode_that_needs_ray_says_so_in_one_line(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY | {"mode": "data_parallel"}))
    r = without_ray("run", str(spec), "--no-save", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "error: mode data_parallel runs on Ray, which cannot be imported here" in r.stderr and "--mode local" in r.stderr
    assert "Traceback" not in r.stderr
