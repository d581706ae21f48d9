"""`xsharp serve MODEL --replicas N`: a registered model on the test session's real Ray cluster
behind Ray Serve, answering as the job service's /predict does, behind the same tokens; removed
from the cluster when the command ends."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from tests.helpers import ROOT, run_cli
from tests.service import free_port, wait_for
from tests.test_predict import check_answer, expected, png_bytes, register, write_data
from xsharp.algos import Model
from xsharp.cluster.store import Store

XSHARP = str(Path(sys.executable).with_name("xsharp"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    spec = write_data(root)["digits"]
    (root / "digits.yaml").write_text(yaml.safe_dump(spec))
    r = run_cli("run", str(root / "digits.yaml"), "--out", str(root / "run"))
    assert r.returncode == 0, r.stderr
    store = Store(root / "home")
    tokens = {"alice": store.add_user("alice"), "bob": store.add_user("bob"), "root": store.add_user("root", admin=True)}
    model_id = register(store, "alice", spec, root / "run" / "model.npz")
    return {"home": root / "home", "tokens": tokens, "id": model_id, "model": Model.load(root / "run" / "model.npz")}


def test_a_served_model_answers_like_the_service_and_is_removed_at_the_end(registry, ray_address, tmp_path):
    from ray import serve

    from xsharp.algos import datasets

    port = free_port()
    log = open(tmp_path / "serve.out", "w+")
    proc = subprocess.Popen(
        [
            XSHARP,
            "serve",
            "digits",
            "--replicas",
            "2",
            "--cpus-per-replica",
            "0",
            "--port",
            str(port),
            "--home",
            str(registry["home"]),
            "--address",
            ray_address,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/v1/models/{registry['id']}"
    try:
        wait_for(lambda: "serving model" in (tmp_path / "serve.out").read_text() or proc.poll() is not None, 120, 0.5, "xsharp serve")
        assert proc.poll() is None, (tmp_path / "serve.out").read_text()
        assert f"serving model {registry['id']} at {url}/predict (2 replica(s)" in (tmp_path / "serve.out").read_text()
        status = serve.status().applications[f"xsharp-model-{registry['id']}"]
        assert status.status == "RUNNING"
        assert [d.replica_states.get("RUNNING") for d in status.deployments.values()] == [2]

        x = datasets.load("digits").x_test[:6]
        model = registry["model"]
        alice = {"Authorization": f"Bearer {registry['tokens']['alice']}"}
        r = httpx.post(f"{url}/predict", params={"top_k": 3}, json={"rows": x.tolist()}, headers=alice, timeout=30)
        assert r.status_code == 200, r.text
        check_answer(r.json(), expected(model, x), model.classes, 3)
        pixels = np.rint(x[0] * 255)
        up = httpx.post(f"{url}/predict", files={"file": ("d.png", png_bytes(pixels), "image/png")}, headers=alice, timeout=30)
        check_answer(up.json(), expected(model, (pixels / 255.0).astype(np.float32)[None]), model.classes, 5)
        root = httpx.post(f"{url}/predict", json={"rows": x[:1].tolist()}, headers={"Authorization": f"Bearer {registry['tokens']['root']}"}, timeout=30)
        assert root.status_code == 200  # an admin may call any model

        bob = httpx.post(f"{url}/predict", json={"rows": x[:1].tolist()}, headers={"Authorization": f"Bearer {registry['tokens']['bob']}"}, timeout=30)
        assert bob.status_code == 404 and bob.json() == {"detail": [f"no model {registry['id']}"]}
        anon = httpx.post(f"{url}/predict", json={"rows": x[:1].tolist()}, timeout=30)
        assert anon.status_code == 401 and anon.json() == {"detail": ["a bearer token is required"]}
        bad = httpx.post(f"{url}/predict", json={"rows": [[1.0, 2.0]]}, headers=alice, timeout=30)
        assert bad.status_code == 422 and bad.json() == {"detail": ["rows[0]: 2 values; the model takes 64 (shape [8, 8])"]}
        big = httpx.post(f"{url}/predict", content=b"\0" * ((8 << 20) + 1), headers=alice | {"Content-Type": "image/png"}, timeout=30)
        assert big.status_code == 413
        info = httpx.get(f"{url}/input", headers=alice, timeout=30).json()
        assert info["kind"] == "image" and info["raw_shape"] == [8, 8]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
    out = (tmp_path / "serve.out").read_text()
    assert proc.returncode == 0, out
    assert f"model {registry['id']}: deployment removed" in out
    wait_for(lambda: not _serve_running(), 30, 0.5, "Serve to stop, serving nothing")  # nothing left behind on the cluster
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{url}/predict", json={"rows": [[0.0] * 64]}, timeout=5)


def _serve_running() -> bool:
    """Serve stops once it serves nothing: its controller is gone then."""
    import ray

    try:
        ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
    except ValueError:
        return False
    return True


def test_serve_refuses_what_it_cannot_do(registry):
    home = ["--home", str(registry["home"])]
    cases = [
        (["serve", "nope", *home], "model 'nope': no such model"),
        (["serve", "999", *home], "model 999: no such model"),
        (["serve", "digits@x", *home], "model 'digits@x': a version is @N or @vN"),
        (["serve", "digits", "--detach", *home], "--detach leaves the model on a Ray cluster"),
        (["serve", "digits", "--replicas", "0", *home], "Invalid value for '--replicas'"),
    ]
    for args, message in cases:
        started = time.monotonic()
        r = run_cli(*args)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert time.monotonic() - started < 30  # refused before any Ray starts
