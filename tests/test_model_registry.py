"""The model registry: every SUCCEEDED job registers a model version with its lineage, served
per user at /v1/models (with an ONNX download) and through `xsharp models`."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from tests.helpers import TINY, run_cli
from tests.service import Server, short_spec, wait_state


@pytest.fixture(scope="module")
def server(tmp_path_factory, ray_address):
    s = Server(tmp_path_factory.mktemp("models"), ray_address).start()
    s.tokens = {"admin": s.add_user("root", admin=True), "alice": s.add_user("alice"), "bob": s.add_user("bob")}
    yield s
    s.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def trained(server):
    """Two finished jobs of alice's with the same name: versions 1 and 2."""
    with server.client(server.tokens["alice"]) as alice:
        # one after the other: versions follow the order the jobs finish in
        first = wait_state(alice, alice.post("/v1/jobs", json=short_spec("digits-net", cpus=1)).json()["id"], "SUCCEEDED")
        second = wait_state(alice, alice.post("/v1/jobs", json=short_spec("digits-net", cpus=1)).json()["id"], "SUCCEEDED")
        return [first, second]


def test_a_finished_job_registers_one_model_with_its_lineage(server, trained):
    with server.client(server.tokens["alice"]) as alice:
        models = alice.get("/v1/models").json()
        assert [(m["job_id"], m["name"], m["version"]) for m in models] == [(trained[0]["id"], "digits-net", 1), (trained[1]["id"], "digits-net", 2)]
        m = alice.get(f"/v1/models/{models[0]['id']}").json()
        assert m["user"] == "alice" and m["job_id"] == trained[0]["id"] and m["name"] == "digits-net"
        assert m["dataset"] == "digits" and m["dataset_version"] is None and m["data_path"] is None
        assert m["metrics"]["test_accuracy"] == trained[0]["result"]["test_accuracy"]
        assert m["spec"]["name"] == "digits-net" and m["spec"]["data"]["dataset"] == "digits"
        assert m["created"] == pytest.approx(trained[0]["finished"])
        assert "registered" in [e["kind"] for e in alice.get(f"/v1/jobs/{trained[0]['id']}").json()["events"]]


def test_models_are_fenced_per_user(server, trained):
    with server.client(server.tokens["alice"]) as alice, server.client(server.tokens["bob"]) as bob, server.client(server.tokens["admin"]) as root:
        model_id = alice.get("/v1/models").json()[0]["id"]
        for method, path in [("GET", f"/v1/models/{model_id}"), ("GET", f"/v1/models/{model_id}/onnx"), ("DELETE", f"/v1/models/{model_id}")]:
            r = bob.request(method, path)
            assert r.status_code == 404 and r.json() == {"detail": [f"no model {model_id}"]}, (method, path, r.text)
        assert bob.get("/v1/models").json() == []
        assert model_id in [m["id"] for m in root.get("/v1/models").json()]
        assert root.get(f"/v1/models/{model_id}").json()["user"] == "alice"
        assert alice.get("/v1/models/999999").json() == {"detail": ["no model 999999"]}
        assert server.client(None).get("/v1/models").status_code == 401


def test_the_onnx_download_predicts_as_xsharp_does(server, trained, tmp_path):
    import onnxruntime as ort

    from xsharp.algos import Model
    from xsharp.export.onnx import model_inputs, raw_rows

    with server.client(server.tokens["alice"]) as alice:
        model_id = alice.get("/v1/models").json()[1]["id"]
        r = alice.get(f"/v1/models/{model_id}/onnx")
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    model = Model.load(server.home / "jobs" / str(trained[1]["id"]) / "artifacts" / "model.npz")
    x = model_inputs(model, raw_rows(model, "test")[:12])
    session = ort.InferenceSession(r.content, providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(["probabilities", "label"], {"input": x})
    np.testing.assert_array_equal(labels, model.predict(x))
    np.testing.assert_allclose(probabilities, model.predict_proba(x), atol=1e-4)


def test_the_cli_lists_exports_and_deletes(server, trained, tmp_path):
    env = {"XSHARP_URL": server.url, "XSHARP_TOKEN": server.tokens["alice"], "XSHARP_HOME": str(tmp_path)}
    r = run_cli("models", "list", "-o", "json", env=env)
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert [m["version"] for m in listed] == [1, 2]
    r = run_cli("models", "export", str(listed[0]["id"]), "--out", str(tmp_path / "m.onnx"), env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m.onnx").stat().st_size > 1000
    r = run_cli("models", "show", "999999", env=env)
    assert r.returncode == 2 and "no model 999999" in r.stderr + r.stdout
    # deleting a model leaves its job's artifacts; the next version still counts up past it
    r = run_cli("models", "delete", str(listed[1]["id"]), env=env)
    assert r.returncode == 0, r.stderr
    assert [m["version"] for m in json.loads(run_cli("models", "list", "-o", "json", env=env).stdout)] == [1]
    assert (server.home / "jobs" / str(listed[1]["job_id"]) / "artifacts" / "model.npz").is_file()


# --------------------------------------------------------------------------- durability, on a real store
def _running_job(store, spec: dict, model_file: str = "artifacts/model.npz") -> int:
    job = store.submit("alice", spec, 0, 1, 0)
    store.transition(job.id, ["QUEUED"], "RUNNING", "started")
    path = store.job_dir(job.id) / model_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not read here")
    return job.id


def test_registration_commits_with_the_succeeded_transition(tmp_path):
    """The row is written by the transition itself; a crash before it leaves a SUCCEEDED job
    with no row, which recover() backfills (the next test)."""
    from xsharp.cluster.store import Store

    store = Store(tmp_path)
    job_id = _running_job(store, TINY | {"data": {"dataset": "alice/letters@3"}})
    store.transition(job_id, ["RUNNING"], "SUCCEEDED", "done", result={"test_accuracy": 0.9})
    (model,) = Store(tmp_path).models()  # a fresh connection: it is on disk
    assert (model.job_id, model.version, model.dataset, model.dataset_version, model.metrics) == (job_id, 1, "alice/letters", "3", {"test_accuracy": 0.9})
    search = _running_job(store, TINY | {"data": {"path": "/data/x.csv"}}, "artifacts/best/model.npz")
    store.transition(search, ["RUNNING"], "SUCCEEDED", "done", result={"best_trial": 2})
    assert (store.models()[-1].path, store.models()[-1].data_path, store.models()[-1].version) == ("artifacts/best/model.npz", "/data/x.csv", 2)
    nothing = store.submit("alice", TINY, 0, 1, 0).id  # a search with no finished trial leaves no model
    store.transition(nothing, ["QUEUED"], "RUNNING", "started")
    store.transition(nothing, ["RUNNING"], "SUCCEEDED", "done", result={"best_trial": None})
    assert len(store.models()) == 2


def test_recover_backfills_a_store_from_before_the_registry(tmp_path):
    import sqlite3

    from xsharp.cluster.store import Store

    store = Store(tmp_path)
    old, kept = _running_job(store, TINY), _running_job(store, TINY)
    store.transition(old, ["RUNNING"], "SUCCEEDED", "done", result={"test_accuracy": 0.5})
    store.transition(kept, ["RUNNING"], "SUCCEEDED", "done", result={"test_accuracy": 0.6})
    assert store.delete_model(store.models()[1].id)  # deleted on purpose: a tombstone, never backfilled
    db = sqlite3.connect(tmp_path / "xsharp.db")
    db.execute("DELETE FROM models WHERE job_id = ?", (old,))  # as if registered by nothing (an older xsharp)
    db.execute("DROP INDEX models_job")
    db.commit()
    db.close()
    reopened = Store(tmp_path)  # an existing store opens; the table and index come back IF NOT EXISTS
    assert reopened.models() == []
    reopened.recover()
    (model,) = reopened.models()
    assert (model.job_id, model.metrics, model.version) == (old, {"test_accuracy": 0.5}, 3)
    reopened.recover()
    assert len(reopened.models()) == 1


def test_a_model_onnx_cannot_express_is_a_422_naming_it(server):
    """A real job whose model the exporter refuses: a sparse coder of 1,001 solver iterations
    (at most 1,000 unroll into a graph)."""
    spec = short_spec("too-deep", cpus=1) | {
        "data": {"dataset": "digits", "limit": 300},
        "model": [{"sparse_coding": {"atoms": 8, "iterations": 1001}}, {"softmax": {}}],
        "pretrain": {"epochs": 1, "batch_size": 50},
        "train": {"epochs": 1, "batch_size": 50},
    }
    with server.client(server.tokens["alice"]) as alice:
        job = wait_state(alice, alice.post("/v1/jobs", json=spec).json()["id"], "SUCCEEDED")
        (model,) = [m for m in alice.get("/v1/models").json() if m["job_id"] == job["id"]]
        r = alice.get(f"/v1/models/{model['id']}/onnx")
    assert r.status_code == 422
    (line,) = r.json()["detail"]
    assert line.startswith(f"model {model['id']} cannot be exported to ONNX: module sparse_coding: 1001 solver iterations"), line
