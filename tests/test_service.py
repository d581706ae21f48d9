"""The job service end to end: a real `xsharp server` (uvicorn on 127.0.0.1, SQLite, scheduler)
on the session's real Ray, driven over HTTP and through the CLI."""

from __future__ import annotations

import http.server
import io
import json
import os
import signal
import threading

import numpy as np
import pytest
import yaml

from tests.helpers import run_cli
from tests.service import Server, first_start, long_spec, short_spec, wait_for, wait_state


class Hook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def webhook():
    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}/hook"
    srv.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory, ray_address, webhook):
    s = Server(tmp_path_factory.mktemp("server"), ray_address, "--checkpoint-seconds", "0.5", "--webhook", webhook).start()
    s.tokens = {"admin": s.add_user("root", admin=True), "alice": s.add_user("alice"), "bob": s.add_user("bob")}
    yield s
    s.kill(signal.SIGTERM)


@pytest.fixture
def alice(server):
    with server.client(server.tokens["alice"]) as c:
        yield c


@pytest.fixture
def bob(server):
    with server.client(server.tokens["bob"]) as c:
        yield c


@pytest.fixture(scope="module")
def reference():
    """Parameters of the long job trained uninterrupted, in this process."""
    from xsharp.cluster.runner import run_job
    from xsharp.spec import parse_spec

    return run_job(parse_spec(long_spec("ref"))).model.get_flat()


def model_params(api, job_id) -> np.ndarray:
    r = api.get(f"/v1/jobs/{job_id}/artifacts/model.npz")
    assert r.status_code == 200
    path = io.BytesIO(r.content)
    with np.load(path) as f:
        return f["params"]


# --------------------------------------------------------------------------- security and input
def test_tokens_are_required_and_users_are_fenced(server, alice, bob):
    with server.client(None) as anon:
        assert anon.get("/v1/jobs").status_code == 401
        assert anon.post("/v1/jobs", json=short_spec("x")).status_code == 401
        assert anon.get("/healthz").status_code == 200 and anon.get("/metrics").status_code == 200
    with server.client("xs_not-a-token") as forged:
        assert forged.get("/v1/jobs").status_code == 401
    job = alice.post("/v1/jobs", json=short_spec("alices", cpus=1)).json()
    for method, path in [("GET", ""), ("POST", "/pause"), ("POST", "/stop"), ("DELETE", ""), ("GET", "/logs"), ("GET", "/metrics"), ("GET", "/artifacts")]:
        r = bob.request(method, f"/v1/jobs/{job['id']}{path}")
        assert (r.status_code, r.json()["detail"]) == (404, [f"no job {job['id']}"]), (method, path)  # as if it did not exist
    assert job["id"] not in [j["id"] for j in bob.get("/v1/jobs").json()]
    with server.client(server.tokens["admin"]) as admin:
        assert job["id"] in [j["id"] for j in admin.get("/v1/jobs").json()]
        assert admin.get(f"/v1/jobs/{job['id']}").status_code == 200
    wait_state(alice, job["id"], "SUCCEEDED")


def test_bad_requests_are_4xx_with_a_message(server, alice):
    bad = short_spec("bad")
    bad["model"] = [{"rbm": {"hidden": 32}}, {"rbm": {"hidden": -3}}, "softmax"]
    r = alice.post("/v1/jobs", json=bad)
    assert r.status_code == 422 and "model[1].rbm.hidden: must be > 0, got -3" in r.json()["detail"]
    r = alice.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = alice.post("/v1/jobs", json=short_spec("huge") | {"mode": "data_parallel", "resources": {"workers": 64}})
    assert r.status_code == 422 and "the cluster has 2 CPU in all" in r.json()["detail"][0]
    r = alice.post("/v1/jobs", content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert alice.get("/v1/jobs/999999").status_code == 404
    assert alice.get("/v1/jobs/abc").status_code == 422


# --------------------------------------------------------------------------- a job's life
def test_a_job_runs_and_leaves_logs_metrics_artifacts_then_is_deleted(server, alice, webhook):
    job = alice.post("/v1/jobs", json=short_spec("life")).json()
    assert job["state"] == "QUEUED" and job["user"] == "alice"
    done = wait_state(alice, job["id"], "SUCCEEDED")
    assert done["result"]["test_accuracy"] > 0.85
    rows = alice.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert rows[-1]["phase"] == "finetune" and rows[-1]["epoch"] == 20 and rows[-1]["val_accuracy"] > 0.8
    log = alice.get(f"/v1/jobs/{job['id']}/logs", params={"follow": "true"}).text
    assert "fine-tune epoch 20/20" in log and "[succeeded]" in log
    names = {a["path"] for a in alice.get(f"/v1/jobs/{job['id']}/artifacts").json()}
    assert names == {"model.npz", "spec.yaml", "metrics.json"}
    assert json.loads(alice.get(f"/v1/jobs/{job['id']}/artifacts/metrics.json").content)["test_accuracy"] == done["result"]["test_accuracy"]
    for sneaky in ["../../xsharp.db", "..%2F..%2Fxsharp.db", "/etc/passwd", "%2Fetc%2Fpasswd", "../job.log"]:
        r = alice.get(f"/v1/jobs/{job['id']}/artifacts/{sneaky}")
        assert 400 <= r.status_code < 500, (sneaky, r.status_code)  # %2F forms reach the guard; others die in routing
        assert b"SQLite" not in r.content and b"root:" not in r.content
    wait_for(lambda: any(h["job"]["id"] == job["id"] and h["job"]["state"] == "SUCCEEDED" for h in Hook.received), 10, what="the webhook")
    assert alice.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert not (server.home / "jobs" / str(job["id"])).exists()


def test_a_data_parallel_job_runs_in_its_reservation(server, alice):
    spec = short_spec("dp") | {"mode": "data_parallel", "resources": {"workers": 2, "cpus_per_worker": 1}}
    job = alice.post("/v1/jobs", json=spec).json()
    assert job["cpus"] == 2
    done = wait_state(alice, job["id"], "SUCCEEDED")
    assert done["result"]["workers"] == 2 and done["result"]["test_accuracy"] > 0.85
    assert "placing 2 workers" in alice.get(f"/v1/jobs/{job['id']}/logs").text


def test_a_service_job_saves_its_fitted_preprocessing_with_the_model(server, alice, tmp_path):
    from xsharp.algos import Model

    spec = short_spec("features", cpus=1)
    spec["data"] = spec["data"] | {"features": [{"standardize": {}}]}
    job = alice.post("/v1/jobs", json=spec).json()
    wait_state(alice, job["id"], "SUCCEEDED")
    path = tmp_path / "model.npz"
    path.write_bytes(alice.get(f"/v1/jobs/{job['id']}/artifacts/model.npz").content)
    model = Model.load(path)
    assert model.pipeline is not None and "standardize" in str(model.pipeline.describe())


def test_pause_resume_stop_and_delete(server, alice, monkeypatch):
    job = alice.post("/v1/jobs", json=long_spec("pausable", epochs=20000)).json()
    wait_state(alice, job["id"], "RUNNING")
    wait_for(lambda: alice.get(f"/v1/jobs/{job['id']}").json()["progress"], 30, what="progress")
    assert alice.delete(f"/v1/jobs/{job['id']}").status_code == 409  # not finished
    from xsharp.cluster.store import Store

    view = {j["job_id"]: j for j in Store(server.home).running_jobs()}  # what the exporter reads
    assert view[job["id"]]["user"] == "alice" and view[job["id"]]["step"] > 0
    os.kill(view[job["id"]]["pids"][0], 0)  # a live process: the job's runner
    from xsharp.appliance.jobs import load_job_view

    monkeypatch.setenv("XSHARP_HOME", str(server.home))
    assert job["id"] in [j["job_id"] for j in load_job_view("xsharp.cluster.store:job_view").running_jobs()]
    assert alice.post(f"/v1/jobs/{job['id']}/pause").status_code == 202
    paused = wait_state(alice, job["id"], "PAUSED")
    assert any("checkpointed at" in e["message"] for e in paused["events"])
    assert alice.post(f"/v1/jobs/{job['id']}/pause").status_code == 409
    assert alice.post(f"/v1/jobs/{job['id']}/resume").status_code == 202
    running = wait_state(alice, job["id"], "RUNNING")
    assert "from checkpoint" in running["events"][-1]["message"]
    assert alice.post(f"/v1/jobs/{job['id']}/stop").status_code == 202
    stopped = wait_state(alice, job["id"], "STOPPED")
    assert stopped["finished"] and alice.post(f"/v1/jobs/{job['id']}/resume").status_code == 409
    assert alice.delete(f"/v1/jobs/{job['id']}").status_code == 204


# --------------------------------------------------------------------------- scheduling
def test_higher_priority_first_then_first_come(server, alice, bob):
    blocker = alice.post("/v1/jobs", json=long_spec("blocker", epochs=800, priority=10)).json()
    wait_state(alice, blocker["id"], "RUNNING")
    a = alice.post("/v1/jobs", json=short_spec("a", priority=0)).json()
    b = bob.post("/v1/jobs", json=short_spec("b", priority=5)).json()
    c = alice.post("/v1/jobs", json=short_spec("c", priority=5)).json()
    done = {j["id"]: wait_state(alice if j["user"] == "alice" else bob, j["id"], "SUCCEEDED") for j in (a, b, c)}
    order = sorted(done, key=lambda i: first_start(done[i]))
    assert order == [b["id"], c["id"], a["id"]]


def test_fair_share_lets_the_user_with_less_recent_usage_go_first(server, alice, bob):
    blocker = alice.post("/v1/jobs", json=long_spec("blocker2", epochs=800, priority=10)).json()
    wait_state(alice, blocker["id"], "RUNNING")
    mine = [alice.post("/v1/jobs", json=short_spec(f"a{i}", cpus=1)).json() for i in range(3)]
    theirs = bob.post("/v1/jobs", json=short_spec("b1", cpus=1)).json()  # queued after all of alice's
    a = [wait_state(alice, j["id"], "SUCCEEDED") for j in mine]
    b = wait_state(bob, theirs["id"], "SUCCEEDED")
    # alice has used the cluster more (the blocker): bob's job goes first, then alice's take turns
    assert first_start(b) <= first_start(a[0]) < first_start(a[1])


def test_preemption_checkpoints_and_the_job_ends_as_if_uninterrupted(server, alice, bob, reference):
    low = alice.post("/v1/jobs", json=long_spec("low", priority=0)).json()
    wait_state(alice, low["id"], "RUNNING")
    wait_for(lambda: alice.get(f"/v1/jobs/{low['id']}").json()["progress"], 30, what="progress")
    high = bob.post("/v1/jobs", json=short_spec("high", priority=9)).json()
    wait_state(alice, low["id"], "PREEMPTED")
    wait_state(bob, high["id"], "SUCCEEDED")
    done = wait_state(alice, low["id"], "SUCCEEDED")
    kinds = [e["kind"] for e in done["events"]]
    assert kinds.count("running") == 2 and "preempted" in kinds
    assert first_start(done) < wait_state(bob, high["id"], "SUCCEEDED")["started"]
    np.testing.assert_array_equal(model_params(alice, low["id"]), reference)


def test_time_slices_rotate_equal_jobs_that_end_as_if_uninterrupted(tmp_path, ray_address, reference):
    s = Server(tmp_path / "sliced", ray_address, "--slice-seconds", "1.5", "--checkpoint-seconds", "0.5").start()
    try:
        with s.client(s.add_user("carol")) as api:
            x = api.post("/v1/jobs", json=long_spec("x")).json()
            y = api.post("/v1/jobs", json=long_spec("y")).json()
            dx, dy = wait_state(api, x["id"], "SUCCEEDED", 180), wait_state(api, y["id"], "SUCCEEDED", 180)
            for d in (dx, dy):
                assert d["runs"] >= 2 and any(e["message"] == "yield requested" for e in d["events"])
            np.testing.assert_array_equal(model_params(api, x["id"]), reference)
            np.testing.assert_array_equal(model_params(api, y["id"]), reference)
    finally:
        s.kill(signal.SIGTERM)


def test_a_killed_server_loses_nothing_and_the_job_resumes(tmp_path, ray_address, reference):
    home = tmp_path / "killed"
    s = Server(home, ray_address, "--checkpoint-seconds", "0.3").start()
    token = s.add_user("dave")
    with s.client(token) as api:
        job = api.post("/v1/jobs", json=long_spec("victim")).json()
        wait_state(api, job["id"], "RUNNING")
        queued = api.post("/v1/jobs", json=long_spec("waits", priority=-1)).json()  # after: it can never start before the kill
        wait_for(lambda: list((home / "jobs" / str(job["id"]) / "checkpoints").glob("ckpt-*.npz")), 30, what="a checkpoint")
    s.kill(signal.SIGKILL)
    s2 = Server(home, ray_address, "--checkpoint-seconds", "0.3")
    s2.port, s2.url = s.port, s.url
    s2.args = s.args
    s2.start()
    try:
        with s2.client(token) as api:
            done = wait_state(api, job["id"], "SUCCEEDED", 120)
            messages = [e["message"] for e in done["events"]]
            assert "server restarted; will resume from the last checkpoint" in messages
            assert any(m.startswith("started (run 2) from checkpoint") for m in messages)
            np.testing.assert_array_equal(model_params(api, job["id"]), reference)
            from xsharp.cluster.store import metric_position

            positions = [metric_position(r) for r in api.get(f"/v1/jobs/{job['id']}/metrics").json()]
            assert positions == sorted(set(positions))  # the resumed run's repeats of the lost run's steps are dropped
            assert wait_state(api, queued["id"], "SUCCEEDED", 120)["runs"] == 1
    finally:
        s2.kill(signal.SIGTERM)


def test_a_killed_server_keeps_a_searchs_finished_trials_and_best_model(tmp_path, ray_address):
    home = tmp_path / "killed-search"
    s = Server(home, ray_address).start()
    token = s.add_user("erin")
    raw = long_spec("crash-search", epochs=4000, cpus=1)  # about 3.5 s a trial: the second is surely running at the kill
    raw["train"]["learning_rate"] = {"grid": [0.1, 1e-7]}  # the first trial is the best; the second is running when the server dies
    raw["search"] = {"strategy": "grid", "max_parallel": 1}
    table = home / "jobs" / "1" / "search.json"

    def first_done():
        trials = json.loads(table.read_text())["trials"] if table.exists() else []
        return trials[0] if trials and trials[0]["state"] == "SUCCEEDED" and (home / "jobs" / "1" / "search-best").is_dir() else None

    with s.client(token) as api:
        job = api.post("/v1/searches", json=raw).json()
        assert job["id"] == 1
        first = wait_for(first_done, 90, what="the first trial and its model")
    s.kill(signal.SIGKILL)
    s2 = Server(home, ray_address)
    s2.port, s2.url, s2.args = s.port, s.url, s.args
    s2.start()
    try:
        with s2.client(token) as api:
            done = wait_state(api, job["id"], "SUCCEEDED", 120)
            assert "server restarted; will resume from the last checkpoint" in [e["message"] for e in done["events"]]
            trials = json.loads(api.get(f"/v1/jobs/{job['id']}/artifacts/search.json").content)["trials"]
            assert [t["state"] for t in trials] == ["SUCCEEDED", "SUCCEEDED"]
            assert (trials[0]["seconds"], trials[0]["metric"]) == (first["seconds"], first["metric"])  # kept, not trained again
            assert done["result"]["best_trial"] == 0 and trials[0]["metric"] > trials[1]["metric"]
            best = json.loads(api.get(f"/v1/jobs/{job['id']}/artifacts/best/metrics.json").content)
            assert best["trial"] == 0 and best["val_accuracy"] == trials[0]["metric"]
            model = api.get(f"/v1/jobs/{job['id']}/artifacts/best/model.npz")
            with np.load(io.BytesIO(model.content)) as f:
                assert f["params"].size > 0
    finally:
        s2.kill(signal.SIGTERM)


# --------------------------------------------------------------------------- the CLI client
def test_cli_submits_lists_follows_and_reports_the_cluster(server, tmp_path):
    env = {"XSHARP_URL": server.url, "XSHARP_TOKEN": server.tokens["alice"], "XSHARP_HOME": str(tmp_path)}
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(short_spec("cli", cpus=1)))
    r = run_cli("submit", str(spec), "--priority", "3", "-o", "json", env=env)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert job["priority"] == 3 and job["user"] == "alice"
    r = run_cli("jobs", "logs", str(job["id"]), "--follow", env=env)
    assert r.returncode == 0 and "[succeeded]" in r.stdout
    listed = json.loads(run_cli("jobs", "list", "-o", "json", env=env).stdout)
    assert job["id"] in [j["id"] for j in listed]
    r = run_cli("jobs", "show", str(job["id"]), env=env)
    assert r.returncode == 0 and "SUCCEEDED" in r.stdout
    status = json.loads(run_cli("cluster", "status", "-o", "json", env=env).stdout)
    assert status["total"]["CPU"] == 2 and len(status["nodes"]) == 1
    r = run_cli("jobs", "pause", str(job["id"]), env=env)
    assert r.returncode == 2 and "409" in r.stderr  # finished jobs cannot pause
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [{rbm: {hidden: -3}}, softmax]\ndata: {dataset: digits}\n")
    r = run_cli("submit", str(bad), env={**env, "XSHARP_URL": "http://127.0.0.1:9"})  # checked before any connection
    assert r.returncode == 2 and "model[0].rbm.hidden: must be > 0, got -3" in r.stderr
    r = run_cli("jobs", "list", env={**env, "XSHARP_TOKEN": "nope"})
    assert r.returncode == 2 and "401" in r.stderr


def test_a_search_is_one_job_that_pauses_and_never_reruns_a_finished_trial(server, alice):
    raw = long_spec("lr-search", epochs=600, cpus=1)
    raw["train"]["learning_rate"] = {"grid": [0.05, 0.1, 0.2, 0.3]}
    raw["search"] = {"strategy": "grid", "max_parallel": 2}
    r = alice.post("/v1/jobs", json=raw)
    assert r.status_code == 422 and any("train.learning_rate" in p for p in r.json()["detail"])  # a plain job is no search
    job = alice.post("/v1/searches", json=raw).json()
    assert job["cpus"] == 2 and job["name"] == "lr-search"
    wait_for(lambda: (alice.get(f"/v1/jobs/{job['id']}").json()["progress"] or {}).get("step", 0) >= 1, 60, what="a finished trial")
    assert alice.post(f"/v1/jobs/{job['id']}/pause").status_code == 202
    wait_state(alice, job["id"], "PAUSED")
    before = {t["id"]: t for t in json.loads((server.home / "jobs" / str(job["id"]) / "search.json").read_text())["trials"] if t["state"] == "SUCCEEDED"}
    assert before
    assert alice.post(f"/v1/jobs/{job['id']}/resume").status_code == 202
    done = wait_state(alice, job["id"], "SUCCEEDED", 120)
    assert done["result"]["trials"] == 4 and done["result"]["best_trial"] is not None
    after = {t["id"]: t for t in json.loads(alice.get(f"/v1/jobs/{job['id']}/artifacts/search.json").content)["trials"]}
    assert all(t["state"] == "SUCCEEDED" for t in after.values())
    for i, t in before.items():  # finished before the pause: kept, not trained again
        assert (after[i]["seconds"], after[i]["metric"]) == (t["seconds"], t["metric"])
    names = {a["path"] for a in alice.get(f"/v1/jobs/{job['id']}/artifacts").json()}
    assert {"search.json", "search.png", "best/model.npz"} <= names
    best = json.loads(alice.get(f"/v1/jobs/{job['id']}/artifacts/best/metrics.json").content)
    assert best["trial"] == done["result"]["best_trial"]  # wherever the best trial ran: before the pause or after
    bad = raw | {"search": {"strategy": "bayes"}}
    r = alice.post("/v1/searches", json=bad)
    assert r.status_code == 422 and r.json()["detail"][0].startswith("search.strategy")


# --------------------------------------------------------------------------- polling: after=, live search tables
def test_metrics_and_logs_with_after_send_only_what_is_new(server, alice, bob):
    job = alice.post("/v1/jobs", json=short_spec("polled", cpus=1)).json()
    wait_state(alice, job["id"], "SUCCEEDED")
    path = f"/v1/jobs/{job['id']}"
    every = alice.get(f"{path}/metrics")
    rows = every.json()
    assert len(rows) > 20 and every.headers["X-Next-After"] == str(len(rows))  # without after: every row, as before
    head = alice.get(f"{path}/metrics", params={"after": 0})
    assert head.json() == rows
    tail = alice.get(f"{path}/metrics", params={"after": 20})
    assert tail.json() == rows[20:] and tail.headers["X-Next-After"] == str(len(rows))
    done = alice.get(f"{path}/metrics", params={"after": len(rows)})
    assert done.json() == [] and done.headers["X-Next-After"] == str(len(rows))

    log = alice.get(f"{path}/logs")
    text = log.content  # after= counts bytes
    assert text.endswith(b"\n") and log.headers["X-Next-After"] == str(len(text))
    middle = text.index(b"\n", len(text) // 2) + 1  # a line start
    rest = alice.get(f"{path}/logs", params={"after": middle})
    assert rest.content == text[middle:] and rest.headers["X-Next-After"] == str(len(text))
    assert alice.get(f"{path}/logs", params={"after": len(text)}).content == b""
    assert alice.get(f"{path}/logs", params={"after": middle + 3}).content == text[middle + 3 :]  # mid-line: the rest of that line, then whole lines
    with open(server.home / "jobs" / str(job["id"]) / "job.log", "ab") as f:
        f.write(b"half a li")  # a line still being written
    grown = alice.get(f"{path}/logs", params={"after": len(text)})
    assert grown.content == b"" and grown.headers["X-Next-After"] == str(len(text))  # it comes whole, next time
    assert alice.get(f"{path}/logs").content == text + b"half a li"  # without after: everything, as before

    r = alice.get(f"{path}/metrics", params={"after": -1})
    assert r.status_code == 422 and r.json()["detail"] == ["query.after: must be >= 0, got '-1'"]
    assert alice.get(f"{path}/logs", params={"after": "x"}).status_code == 422
    assert bob.get(f"{path}/metrics", params={"after": 0}).status_code == 404
    assert bob.get(f"{path}/logs", params={"after": 0}).status_code == 404


def test_a_searchs_trial_table_is_served_while_it_runs_and_fenced_like_its_job(server, alice, bob, tmp_path):
    raw = long_spec("live-search", epochs=800, cpus=1)
    raw["train"]["learning_rate"] = {"grid": [0.1, 0.3]}
    raw["search"] = {"strategy": "grid", "max_parallel": 2}
    plain = alice.post("/v1/jobs", json=short_spec("not-a-search", cpus=1)).json()
    job = alice.post("/v1/searches", json=raw).json()
    early = alice.get(f"/v1/searches/{job['id']}").json()  # before it starts: what it searches, no trials yet
    assert early["params"] == ["train.learning_rate"] and early["settings"]["strategy"] == "grid" and early["final"] is False
    assert bob.get(f"/v1/searches/{job['id']}").status_code == 404
    assert alice.get(f"/v1/searches/{plain['id']}").json()["detail"] == [f"job {plain['id']} is not a search"]
    assert alice.get("/v1/searches/999999").status_code == 404
    listed = [j["id"] for j in alice.get("/v1/searches").json()]
    assert job["id"] in listed and plain["id"] not in listed
    assert job["id"] not in [j["id"] for j in bob.get("/v1/searches").json()]

    def running_table():
        s = alice.get(f"/v1/searches/{job['id']}").json()
        live = [t for t in s["trials"] if t["state"] == "RUNNING" and t["epochs"] > 0]
        return s if live and not s["final"] else None

    s = wait_for(running_table, 90, every=0.1, what="a live table with a trial part-way through")
    assert len(s["trials"]) == 2 and s["job"]["state"] == "RUNNING"
    t = next(t for t in s["trials"] if t["state"] == "RUNNING" and t["epochs"] > 0)
    assert 0 < t["epochs"] < 800 and len(t["curve"]) == t["epochs"] and t["metric"] == t["curve"][-1] and t["seconds"] > 0
    env = {"XSHARP_URL": server.url, "XSHARP_TOKEN": server.tokens["alice"], "XSHARP_HOME": str(tmp_path)}
    r = run_cli("search", "show", str(job["id"]), env=env)  # the CLI reads the same live table
    assert r.returncode == 0 and "so far" in r.stdout and "RUNNING" in r.stdout, r.stdout + r.stderr
    done = wait_state(alice, job["id"], "SUCCEEDED", 120)
    final = alice.get(f"/v1/searches/{job['id']}").json()
    assert final["final"] and final["best"] == done["result"]["best_trial"] is not None
    assert [t["state"] for t in final["trials"]] == ["SUCCEEDED", "SUCCEEDED"] and all(len(t["curve"]) == t["epochs"] == 800 for t in final["trials"])
    assert final["trials"] == json.loads(alice.get(f"/v1/jobs/{job['id']}/artifacts/search.json").content)["trials"]
    shown = json.loads(run_cli("search", "show", str(job["id"]), "-o", "json", env=env).stdout)
    assert shown["final"] and shown["trials"] == final["trials"]
    r = run_cli("search", "show", str(job["id"]), env={**env, "XSHARP_TOKEN": server.tokens["bob"]})
    assert r.returncode == 2 and "404" in r.stderr
    wait_state(alice, plain["id"], "SUCCEEDED")
