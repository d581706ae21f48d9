"""The CLI in everyday use: where `xsharp run` saves, `--set`, what the server refuses
at submit, tables in an 80-column terminal, and Ctrl-C on a search. Real CLI processes, a real
server, the session's real Ray."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import TINY, run_cli
from tests.service import Server, short_spec, wait_for, wait_state

XSHARP = str(Path(sys.executable).with_name("xsharp"))


def clean_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XSHARP_RAY_ADDRESS", "RAY_ADDRESS", "COLUMNS")}
    env.update(extra or {})
    return env


def run_in(cwd: Path, *args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """`run_cli`, from the user's own folder (runs/NAME is relative to it)."""
    return subprocess.run([XSHARP, *args], capture_output=True, text=True, env=clean_env(env), timeout=timeout, cwd=cwd)


def write(folder: Path, spec: dict, name: str = "job.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec))
    return path


# --------------------------------------------------------------------------- 1. xsharp run saves to runs/NAME
def test_run_saves_to_runs_name_never_overwrites_an_earlier_run_and_says_where(tmp_path, tiny):
    tiny["name"] = "digits-dbn"
    spec = write(tmp_path, tiny)
    fast = ["--set", "train.epochs=2", "--set", "pretrain.epochs=1"]

    r = run_in(tmp_path, "run", str(spec), *fast)
    assert r.returncode == 0, r.stderr
    assert "saved to runs/digits-dbn (model.npz, spec.yaml, metrics.json)" in r.stdout
    first = tmp_path / "runs" / "digits-dbn"
    assert {p.name for p in first.iterdir()} >= {"model.npz", "spec.yaml", "metrics.json"}
    first_metrics = (first / "metrics.json").read_text()

    r = run_in(tmp_path, "run", str(spec), *fast, "-o", "json")  # a rerun: a new folder, the first run untouched
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["job"] == "digits-dbn"  # stdout stays one JSON document
    assert "saved to runs/digits-dbn-2 (model.npz, spec.yaml, metrics.json)" in r.stderr
    assert (tmp_path / "runs" / "digits-dbn-2" / "model.npz").is_file()
    assert (first / "metrics.json").read_text() == first_metrics

    r = run_in(tmp_path, "run", str(spec), *fast, "--no-save")
    assert r.returncode == 0, r.stderr
    assert "saved to" not in r.stdout + r.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["digits-dbn", "digits-dbn-2"]

    r = run_in(tmp_path, "run", str(spec), *fast, "--out", "runs/digits-dbn")  # named explicitly: replaced, and said so
    assert r.returncode == 0, r.stderr
    assert "saved to runs/digits-dbn (model.npz, spec.yaml, metrics.json), replacing the run that was there" in r.stdout
    assert (first / "metrics.json").read_text() != first_metrics

    r = run_in(tmp_path, "run", str(spec), "--no-save", "--out", "elsewhere")
    assert r.returncode == 2 and "--no-save and --out" in r.stderr
    r = run_cli("run", "--help")
    assert "runs/NAME-2" in r.stdout and "--no-save" in r.stdout and "--set" in r.stdout


# --------------------------------------------------------------------------- 2. --set KEY=VALUE
def test_set_overrides_values_by_dotted_path_and_list_index(tmp_path, tiny):
    spec = write(tmp_path, tiny)
    out = tmp_path / "o"
    r = run_in(
        tmp_path, "run", str(spec), "--out", str(out),
        "--set", "train.epochs=3", "--set", "data.limit=500", "--set", "model[0].rbm.hidden=64",
        "--set", "model[2].softmax.units=10", "--set", "pretrain.epochs=1", "--set", "name=renamed",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    saved = yaml.safe_load((out / "spec.yaml").read_text())
    assert saved["train"]["epochs"] == 3 and saved["data"]["limit"] == 500 and saved["name"] == "renamed"
    assert saved["model"][0]["rbm"]["hidden"] == 64 and saved["model"][2]["softmax"]["units"] == 10
    assert saved["pretrain"]["epochs"] == 1 and saved["train"]["learning_rate"] == tiny["train"]["learning_rate"]  # the rest as in the file
    assert "fine-tune: epoch 3/3" in r.stderr


@pytest.mark.parametrize(
    "setting,message",
    [
        ("train.epochs=-1", "train.epochs: must be >= 0, got -1"),  # the spec's own validation, as for the file
        ("train.nosuch=1", "train.nosuch: unknown field"),
        ("model[7].rbm.hidden=2", "--set model[7].rbm.hidden: model has 3 entries (indexes 0 to 2), no [7]"),
        ("train.epochs.x=1", "--set train.epochs.x: train.epochs is a value (20), not a section with fields"),
        ("train.epochs", "--set train.epochs: expected KEY=VALUE"),
        ("train.epochs=[1", "--set train.epochs: the value '[1' is not valid YAML"),
        ("model[0]rbm=1", "--set model[0]rbm: not a dotted path"),
    ],
)
def test_a_bad_set_exits_2_naming_the_field_for_run_and_submit(tmp_path, setting, message):
    spec = write(tmp_path, copy.deepcopy(TINY))
    r = run_in(tmp_path, "run", str(spec), "--set", setting)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "runs").exists()
    r = run_in(tmp_path, "submit", str(spec), "--set", setting, env={"XSHARP_URL": "http://127.0.0.1:9", "XSHARP_TOKEN": "x", "XSHARP_HOME": str(tmp_path)})
    assert r.returncode == 2 and message in r.stderr, r.stderr  # checked before any connection


# --------------------------------------------------------------------------- 3, 4: the server refuses at submit; tables at 80 columns
@pytest.fixture(scope="module")
def server(tmp_path_factory, ray_address):
    base = tmp_path_factory.mktemp("first-hour")
    root = base / "data-root"
    root.mkdir()
    s = Server(base / "home", ray_address, "--data-root", str(root)).start()
    s.root = root
    s.tokens = {"alice": s.add_user("alice")}
    yield s
    s.kill(signal.SIGTERM)


def test_submit_refuses_missing_data_and_a_group_that_cannot_fit_before_creating_a_job(server, tmp_path):
    env = {"XSHARP_URL": server.url, "XSHARP_TOKEN": server.tokens["alice"], "XSHARP_HOME": str(tmp_path)}
    missing = short_spec("missing-data", cpus=1) | {"data": {"path": str(server.root / "nope.npz")}}
    r = run_in(tmp_path, "submit", str(write(tmp_path, missing)), env=env)
    assert r.returncode == 2, r.stderr
    assert "422" in r.stderr and f"data.path: {server.root / 'nope.npz'}: no such file or directory" in r.stderr
    r = run_in(tmp_path, "submit", str(write(tmp_path, short_spec("no-folder", cpus=1))), "--set", "data={path: gone}", env=env)
    assert r.returncode == 2 and "data.path: gone: no such file or directory" in r.stderr, r.stderr  # relative: under the data root

    huge = short_spec("huge", cpus=1) | {"mode": "data_parallel"}
    r = run_in(tmp_path, "submit", str(write(tmp_path, huge)), "--set", "resources.workers=64", env=env)
    assert r.returncode == 2, r.stderr
    assert "422" in r.stderr and "resources: 64 workers need 64 CPU; the cluster has 2 CPU in all" in r.stderr

    with server.client(server.tokens["alice"]) as alice:
        r = alice.post("/v1/jobs", json=missing)
        assert r.status_code == 422 and r.json()["detail"] == [f"data.path: {server.root / 'nope.npz'}: no such file or directory"]
        assert alice.get("/v1/jobs").json() == []  # nothing was created, nothing can preempt anyone

        x = np.random.default_rng(0).random((120, 64)).astype(np.float32)
        np.savez(server.root / "ok.npz", x=x, y=np.arange(120) % 4)
        ok = short_spec("ok-data", cpus=1) | {"data": {"path": "ok.npz"}}
        r = alice.post("/v1/jobs", json=ok)
        assert r.status_code == 201, r.text  # a file that is there and readable is admitted
        wait_state(alice, r.json()["id"], "SUCCEEDED")


def test_submit_set_and_tables_that_wrap_rather_than_cut_at_80_columns(server, tmp_path):
    env = {"XSHARP_URL": server.url, "XSHARP_TOKEN": server.tokens["alice"], "XSHARP_HOME": str(tmp_path)}
    spec = write(tmp_path, short_spec("a-rather-long-job-name-for-a-table", cpus=1))
    r = run_in(tmp_path, "submit", str(spec), "-o", "json", "--set", "mode=data_parallel", "--set", "resources.workers=1", "--set", "train.epochs=3", env=env)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    with server.client(server.tokens["alice"]) as alice:
        done = wait_state(alice, job["id"], "SUCCEEDED")
        assert alice.get(f"/v1/jobs/{job['id']}").json()["spec"]["train"]["epochs"] == 3
    assert done["mode"] == "data_parallel"
    narrow = env | {"COLUMNS": "80"}
    for args in (["jobs", "list"], ["jobs", "show", str(job["id"])]):
        r = run_in(tmp_path, *args, env=narrow)
        assert r.returncode == 0, r.stderr
        assert "SUCCEEDED" in r.stdout and "data_parallel" in r.stdout, r.stdout
        assert "…" not in r.stdout, r.stdout
        rows = [line for line in r.stdout.splitlines() if line.startswith("│")]
        assert len(rows) >= 2 and all(line.count("│") == 9 for line in rows), r.stdout  # wrapped within its cell
    assert "a-rather-long-job-name-for-a-table" in "".join(c for c in r.stdout if c not in "│ \n")  # folded, not cut


# --------------------------------------------------------------------------- 5. Ctrl-C on a search
def test_ctrl_c_on_a_search_says_a_rerun_resumes_it_and_the_rerun_does(tmp_path, ray_address):
    raw = copy.deepcopy(TINY) | {"name": "lr-search"}
    raw["data"]["limit"] = 300
    raw["train"]["learning_rate"] = {"grid": [0.05, 0.1, 0.2, 0.3]}
    raw["train"]["epochs"] = 30
    raw["search"] = {"strategy": "grid", "max_parallel": 1}
    spec = write(tmp_path, raw, "search.yaml")
    args = [XSHARP, "run", str(spec)]  # default folder: runs/lr-search under the user's folder
    env = clean_env({"XSHARP_RAY_ADDRESS": ray_address})
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    table = tmp_path / "runs" / "lr-search" / "search.json"

    def one_finished():
        assert proc.poll() is None, proc.communicate()
        try:
            trials = json.loads(table.read_text())["trials"]
        except (OSError, ValueError):
            return None
        return [t for t in trials if t["state"] == "SUCCEEDED"] or None

    finished = wait_for(one_finished, 180, every=0.1, what="a first trial to finish")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "kept in runs/lr-search; run the same command again to resume" in stderr, stderr
    assert "Traceback" not in stderr
    kept = {t["id"]: t for t in json.loads(table.read_text())["trials"] if t["state"] == "SUCCEEDED"}
    assert kept and set(kept) >= {t["id"] for t in finished}

    started = time.time()
    r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    assert r.returncode == 0, r.stderr
    again = {t["id"]: t for t in json.loads(table.read_text())["trials"]}
    assert all(t["state"] == "SUCCEEDED" for t in again.values()) and len(again) == 4
    for i, t in kept.items():  # the finished trials were not trained again
        assert (again[i]["seconds"], again[i]["metric"]) == (t["seconds"], t["metric"])
    assert time.time() - started < 240


def test_two_runs_started_together_never_share_a_folder(tmp_path, tiny):
    """A hostile review found two runs of one name both saving to runs/NAME, the later one over the other."""
    tiny["name"] = "twin"
    spec = write(tmp_path, tiny)
    slow = subprocess.Popen(
        [XSHARP, "run", str(spec), "--mode", "local", "--set", "train.epochs=400", "--set", "pretrain.epochs=0"],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (tmp_path / "runs" / "twin" / ".running").exists() or slow.poll() is not None, 120, 0.1, "the first run to claim its folder")
        assert slow.poll() is None, "the first run ended before the second started: make it longer"
        quick = run_in(tmp_path, "run", str(spec), "--mode", "local", "--set", "train.epochs=1", "--set", "pretrain.epochs=0")
        assert quick.returncode == 0 and "saved to runs/twin-2 " in quick.stdout, quick.stderr
        out, errors = slow.communicate(timeout=240)
    finally:
        if slow.poll() is None:
            slow.kill()
    assert slow.returncode == 0 and "saved to runs/twin " in out, errors
    assert json.loads((tmp_path / "runs" / "twin-2" / "metrics.json").read_text())["finetune"][-1]["epoch"] == 1
    assert not (tmp_path / "runs" / "twin" / ".running").exists() and not (tmp_path / "runs" / "twin-2" / ".running").exists()
