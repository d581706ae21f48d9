"""A hostile user against a real `xsharp server` on 127.0.0.1: what a job may read, what a user
may see of others, how big a request may be, and that stop and pause always land.

The server has one data root. Outside it lies a file with a canary in every line; the tests
look for the canaries, the admin's token and /etc/shadow's lines in everything the hostile
user (bob) can read afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import TINY
from tests.service import Server, long_spec, short_spec, wait_for, wait_state

CANARY = "CANARY-7f3a9c"
HEADER_CANARY = "HEADERCANARY-51d2"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    root, outside = base / "data-root", base / "outside"
    root.mkdir()
    outside.mkdir()
    rows = "\n".join(f"{'good' if i % 2 else 'bad'},review number {i} is {'fine' if i % 2 else 'awful'}" for i in range(40))
    (root / "reviews.csv").write_text("label,text\n" + rows + "\n")
    (root / "secret-header.csv").write_text(f"{HEADER_CANARY}-a,{HEADER_CANARY}-b\nx,y\n")
    (outside / "secret.csv").write_text("label,text\n" + "\n".join(f"{CANARY}-{i},{CANARY} line {i}" for i in range(20)) + "\n")
    os.mkfifo(root / "fifo")
    (root / "escape.csv").symlink_to(outside / "secret.csv")
    (root / "escape-dir").symlink_to(outside, target_is_directory=True)
    (root / "swapped.csv").write_text("label,text\n" + rows + "\n")
    return {"base": base, "root": root, "outside": outside}


@pytest.fixture(scope="module")
def server(env, ray_address):
    s = Server(
        env["base"] / "home",
        ray_address,
        "--data-root",
        str(env["root"]),
        "--checkpoint-seconds",
        "0.5",
        "--stop-grace",
        "2",
        "--runner-memory",
        str(1500 * 1024**2),
        "--max-parameters",
        str(10**9),
        "--max-user-priority",
        "5",
    ).start()
    s.admin_token = s.client_config.read_text().split("token: ")[1].split()[0]  # written by the first start
    s.tokens = {"alice": s.add_user("alice"), "bob": s.add_user("bob")}
    yield s
    s.kill(signal.SIGTERM)


def csv_spec(name: str, path: str, **data) -> dict:
    return TINY | {
        "name": name,
        "data": {"path": path, "format": "csv", "features": [{"bow": {"min_count": 1}}], "validation_fraction": 0} | data,
        "model": [{"softmax": {}}],
        "pretrain": {"epochs": 0},
        "train": {"epochs": 2, "batch_size": 8},
        "resources": {"cpus_per_worker": 1},
    }


def everything_readable(api) -> str:
    """All that a user can read through the API: jobs, their events, logs, metrics and artifacts, the cluster, searches."""
    parts = [api.get("/v1/jobs").text, api.get("/v1/cluster").text, api.get("/v1/searches").text]
    for job in api.get("/v1/jobs").json():
        jid = job["id"]
        parts += [api.get(f"/v1/jobs/{jid}").text, api.get(f"/v1/jobs/{jid}/logs").text, api.get(f"/v1/jobs/{jid}/metrics").text]
        for art in api.get(f"/v1/jobs/{jid}/artifacts").json():
            parts.append(api.get(f"/v1/jobs/{jid}/artifacts/{art['path']}").content.decode("latin-1"))
    return "\n".join(parts)


def shadow_lines() -> list[str]:
    try:
        return [line for line in Path("/etc/shadow").read_text().splitlines() if len(line) >= 8]
    except OSError:
        return []


def test_a_hostile_data_path_is_refused_at_submit_and_nothing_leaks(server, env):
    with server.client(server.tokens["alice"]) as alice, server.client(server.tokens["bob"]) as bob:
        theirs = alice.post("/v1/jobs", json=short_spec("alices-private-job", cpus=1)).json()
        wait_state(alice, theirs["id"], "SUCCEEDED")
        job_dir = server.home / "jobs" / str(theirs["id"])
        targets = {
            "/etc/shadow": "not under a data root",
            str(server.client_config): "not under a data root",
            str(server.home / "xsharp.db"): "not under a data root",
            str(job_dir / "job.log"): "not under a data root",
            str(job_dir / "artifacts" / "spec.yaml"): "not under a data root",
            "/proc/self/environ": "not under a data root",
            "/dev/zero": "not under a data root",
            str(env["root"] / "fifo"): "not a regular file or folder",
            str(env["root"] / "escape.csv"): "not under a data root",  # a symlink out of the root
            str(env["root"] / "escape-dir" / "secret.csv"): "not under a data root",
            str(env["root"] / ".." / "outside" / "secret.csv"): "cannot hold '..'",
            "../outside/secret.csv": "cannot hold '..'",
            f"/etc/localtime/../..{env['root']}/reviews.csv": "cannot hold '..'",  # a symlink before '..' would answer differently
            str(env["outside"] / "no-such-file.csv"): "not under a data root",  # the same answer whether it exists or not
            "d/\ud800.csv": "a path must be valid text",  # was a 500
        }
        for target, rule in targets.items():
            t0 = time.time()
            body = json.dumps(csv_spec("grab", target))  # ASCII, \ud800 escaped: httpx's own encoder would refuse it
            r = bob.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 403, (target, r.status_code, r.text)
            assert r.json()["detail"][0].startswith("data.path: ") and rule in r.json()["detail"][0], (target, r.text)
            assert time.time() - t0 < 5  # a FIFO is never opened, so nothing blocks
        r = bob.post("/v1/jobs", json=csv_spec("grab-labels", str(env["root"] / "reviews.csv"), labels="/etc/shadow"))
        assert r.status_code == 403 and r.json()["detail"][0].startswith("data.labels: not under a data root")
        search = csv_spec("grab-search", "/etc/shadow") | {"train": {"epochs": 2, "batch_size": 8, "learning_rate": {"grid": [0.1, 0.2]}}}
        r = bob.post("/v1/searches", json=search)
        assert r.status_code == 403 and "not under a data root" in r.json()["detail"][0], r.text
        # inside the root: a missing file is a 422; a file whose header lacks the column names the column, not the header
        assert bob.post("/v1/jobs", json=csv_spec("missing", "nope.csv")).status_code == 422
        leaky = bob.post("/v1/jobs", json=csv_spec("header", "secret-header.csv")).json()
        failed = wait_state(bob, leaky["id"], "FAILED")
        assert "missing column 'label' (2 columns" in failed["error"] and failed["failures"] == 0
        seen = everything_readable(bob)
    for secret in [CANARY, HEADER_CANARY, server.admin_token, "alices-private-job", *shadow_lines()]:
        assert secret not in seen, secret


def test_a_job_allowed_at_submit_is_checked_again_when_it_reads(server, env):
    """A file swapped for a symlink out of the root after submit is refused when the job opens it."""
    with server.client(server.admin_token) as admin, server.client(server.tokens["bob"]) as bob:
        blocker = admin.post("/v1/jobs", json=long_spec("blocker", epochs=20000, cpus=2)).json()
        wait_state(admin, blocker["id"], "RUNNING")
        job = bob.post("/v1/jobs", json=csv_spec("swap", str(env["root"] / "swapped.csv"))).json()
        assert job["state"] == "QUEUED"
        (env["root"] / "swapped.csv").unlink()
        (env["root"] / "swapped.csv").symlink_to(env["outside"] / "secret.csv")
        assert admin.post(f"/v1/jobs/{blocker['id']}/stop").status_code == 202
        failed = wait_state(bob, job["id"], "FAILED")
        assert "data.path: not under a data root" in failed["error"] and failed["failures"] == 0 and failed["runs"] == 1
        assert CANARY not in everything_readable(bob)


def test_the_cluster_view_shows_a_user_only_their_own_queue(server):
    with server.client(server.admin_token) as admin, server.client(server.tokens["alice"]) as alice, server.client(server.tokens["bob"]) as bob:
        blocker = admin.post("/v1/jobs", json=long_spec("fills-the-cluster", epochs=20000, cpus=2)).json()
        wait_state(admin, blocker["id"], "RUNNING")
        hers = alice.post("/v1/jobs", json=short_spec("alices-queued", cpus=1)).json()
        mine = bob.post("/v1/jobs", json=short_spec("bobs-queued", cpus=1)).json()
        seen = bob.get("/v1/cluster").json()
        assert [j["id"] for j in seen["queue"]] == [mine["id"]]
        assert seen["nodes"] and all(set(n) == {"cpus", "gpus"} for n in seen["nodes"])
        full = admin.get("/v1/cluster").json()
        assert {hers["id"], mine["id"]} <= {j["id"] for j in full["queue"]} and all(n["node_id"] and n["address"] for n in full["nodes"])
        for api, job in ((admin, blocker), (alice, hers), (bob, mine)):
            api.post(f"/v1/jobs/{job['id']}/stop")
            wait_state(api, job["id"], ["STOPPED", "SUCCEEDED"])


def test_priority_above_the_users_cap_is_refused(server):
    with server.client(server.tokens["bob"]) as bob, server.client(server.admin_token) as admin:
        r = bob.post("/v1/jobs", json=short_spec("pushy", priority=6))
        assert r.status_code == 403 and r.json()["detail"][0].startswith("priority: users who are not admins submit at priority 5 or lower")
        assert bob.post("/v1/jobs", json=short_spec("polite", priority=5)).status_code == 201
        job = admin.post("/v1/jobs", json=short_spec("urgent", priority=100)).json()
        assert job["priority"] == 100
        for api in (bob, admin):
            for j in api.get("/v1/jobs", params={"state": "QUEUED"}).json():
                api.post(f"/v1/jobs/{j['id']}/stop")


def slow_step_spec(name: str) -> dict:
    """A job whose first step runs for minutes: FISTA with 10,000 iterations on 4,096 atoms."""
    return TINY | {
        "name": name,
        "data": {"dataset": "digits", "limit": 600},
        "model": [{"sparse_coding": {"atoms": 4096, "iterations": 10000}}, {"softmax": {}}],
        "pretrain": {"epochs": 1, "batch_size": 600},
        "resources": {"cpus_per_worker": 1},
    }


@pytest.mark.parametrize("action,lands", [("stop", "STOPPED"), ("pause", "PAUSED")])
def test_stop_and_pause_land_even_when_the_runner_is_stuck_in_a_step(server, action, lands):
    with server.client(server.tokens["bob"]) as bob:
        job = bob.post("/v1/jobs", json=slow_step_spec(f"stuck-{action}")).json()
        wait_state(bob, job["id"], "RUNNING")
        time.sleep(2)  # the data (600 digits) loads in well under that: the first step is under way
        t0 = time.time()
        assert bob.post(f"/v1/jobs/{job['id']}/{action}").status_code == 202
        done = wait_state(bob, job["id"], lands, 30)
        assert time.time() - t0 < 20
        assert any("did not stop within 2 s and was killed" in e["message"] for e in done["events"]), done["events"]
        if action == "pause":
            assert bob.post(f"/v1/jobs/{job['id']}/stop").status_code == 202
            wait_state(bob, job["id"], "STOPPED")


def test_a_job_over_its_memory_or_parameter_cap_fails_once_without_retries(server):
    with server.client(server.tokens["bob"]) as bob:
        big = TINY | {
            "name": "too-big-for-memory",
            "model": [{"dense": {"units": 16384}}, {"dense": {"units": 16384}}, {"softmax": {}}],
            "pretrain": {"epochs": 0},
            "resources": {"cpus_per_worker": 1},
        }
        huge = big | {"name": "too-many-parameters", "model": [{"dense": {"units": 65536}}, {"dense": {"units": 65536}}, {"softmax": {}}]}
        jobs = [bob.post("/v1/jobs", json=spec).json() for spec in (big, huge)]
        memory, params = (wait_state(bob, j["id"], "FAILED", 120) for j in jobs)
        assert memory["error"].startswith("out of memory: the job needs more than its runner may take (1572864000 bytes")
        assert "over this server's cap of 1,000,000,000" in params["error"] and params["error"].startswith("bad input: ")
        assert (memory["runs"], memory["failures"], params["runs"], params["failures"]) == (1, 0, 1, 0)


def test_the_admin_token_is_only_hashed_in_the_store(server):
    mode = server.client_config.stat().st_mode & 0o777
    assert mode == 0o600 and server.admin_token.startswith("xs_")
    assert server.client_config.parent != server.home and not (server.home / "config").exists()
    with server.client(server.admin_token) as admin:
        assert admin.get("/v1/me").json()["admin"] is True
    hashed = hashlib.sha256(server.admin_token.encode()).hexdigest().encode()
    stored = [p.read_bytes() for p in server.home.rglob("*") if p.is_file()]
    assert not any(server.admin_token.encode() in b for b in stored)
    assert any(hashed in b for b in stored)  # the database holds its hash


def test_runners_of_an_embedded_ray_do_not_inherit_the_servers_token(tmp_path):
    """`xsharp server` without --address starts Ray itself, whose workers inherit its environment."""
    s = Server(tmp_path / "embedded", None, "--runner-memory", str(1024**3), env={"XSHARP_TOKEN": "xs_from-the-admins-shell-" + CANARY}).start()
    try:
        token = s.add_user("carol")
        with s.client(token) as api:
            job = api.post("/v1/jobs", json=long_spec("env-check", epochs=20000, cpus=1)).json()
            wait_state(api, job["id"], "RUNNING", 120)
            from xsharp.cluster.store import Store

            pids = wait_for(lambda: {j["job_id"]: j for j in Store(s.home).running_jobs()}.get(job["id"], {}).get("pids"), 30, what="the runner's pid")
            environ = Path(f"/proc/{pids[0]}/environ").read_bytes()
            assert b"XSHARP_TOKEN" not in environ and CANARY.encode() not in environ
            limits = Path(f"/proc/{pids[0]}/limits").read_text()
            assert any(line.startswith("Max data size") and str(1024**3) in line for line in limits.splitlines()), limits
            api.post(f"/v1/jobs/{job['id']}/stop")
            wait_state(api, job["id"], "STOPPED")
    finally:
        s.kill(signal.SIGTERM)


def test_a_legacy_config_in_the_store_moves_to_the_users_config(tmp_path, ray_address):
    home = tmp_path / "old-home"
    home.mkdir()
    (home / "config").write_text("url: http://127.0.0.1:1\ntoken: xs_legacy\n")
    s = Server(home, ray_address).start()
    try:
        assert not (home / "config").exists()
        assert "xs_legacy" in s.client_config.read_text() and s.client_config.stat().st_mode & 0o777 == 0o600
    finally:
        s.kill(signal.SIGTERM)


def test_metric_rows_are_never_repeated_after_a_resume(tmp_path):
    from xsharp.cluster.store import Store, metric_position

    store = Store(tmp_path)
    job = store.submit("u", {"name": "j"}, 0, 1, 0)
    run1 = [{"phase": "pretrain", "layer": 0, "epoch": 1, "step": s, "loss": 1.0} for s in (5, 10)] + [
        {"phase": "finetune", "layer": None, "epoch": e, "step": 10 * e, "loss": 0.5} for e in (1, 2, 3)
    ]
    assert store.add_metrics(job.id, run1) == 5
    # the run died; its resume from a checkpoint in fine-tuning epoch 2 reports epochs 2 and 3 again, then 4
    resumed = [{"phase": "finetune", "layer": None, "epoch": e, "step": 10 * e, "loss": 0.5} for e in (2, 3, 4)]
    assert store.add_metrics(job.id, resumed) == 1
    rows = store.metrics(job.id)
    assert [r["epoch"] for r in rows if r["phase"] == "finetune"] == [1, 2, 3, 4]
    positions = [metric_position(r) for r in rows]
    assert positions == sorted(set(positions))
    assert json.dumps(rows)  # plain rows


def test_a_spec_error_from_a_runner_reaches_the_scheduler_whole():
    import pickle

    from xsharp.spec import SpecError

    e = pickle.loads(pickle.dumps(SpecError(["model: too big", "data: bad"], "job")))
    assert (e.problems, e.source, str(e)) == (["model: too big", "data: bad"], "job", "job: model: too big; data: bad")


def test_every_worker_of_a_group_gets_the_runners_memory_limit(ray_address):
    import resource

    import ray

    from xsharp.parallel.group import WorkerGroup

    @ray.remote
    class Probe:
        def limit(self):
            return resource.getrlimit(resource.RLIMIT_DATA)

    with WorkerGroup(Probe, 2, 0.5, 0, memory_limit=3 * 1024**3) as group:
        assert ray.get([a.limit.remote() for a in group.actors]) == [(3 * 1024**3, 3 * 1024**3)] * 2
    with WorkerGroup(Probe, 1, 0.5, 0) as group:  # `xsharp run`: no limit
        assert ray.get(group.actors[0].limit.remote())[0] == resource.RLIM_INFINITY


def test_a_poll_of_a_dead_or_failing_runner_gives_no_events_rather_than_an_error(ray_address):
    """A runner killed (for memory, say) or failing made every scheduler tick raise, stalling every job."""
    import ray

    from xsharp.parallel.group import EventPoll

    @ray.remote
    def failing_poll():
        raise MemoryError("killed")

    @ray.remote
    class Runner:
        def poll(self):
            return [("log", "hello")]

    assert EventPoll(failing_poll.remote).take(timeout=30) is None
    runner = Runner.remote()
    poll = EventPoll(runner.poll.remote)
    assert poll.take(timeout=30) == [("log", "hello")]
    ray.kill(runner)
    # ray.kill is asynchronous: a call sent just after it may still be served. Wait until calls fail.
    deadline = time.monotonic() + 30
    while True:
        try:
            ray.get(runner.poll.remote(), timeout=30)
        except ray.exceptions.RayActorError:
            break
        assert time.monotonic() < deadline, "the killed actor still answers after 30 s"
        time.sleep(0.1)
    assert EventPoll(runner.poll.remote).take(timeout=30) is None


def test_a_failure_the_user_reads_never_quotes_what_another_library_said():
    from xsharp.cluster.policy import public_reason
    from xsharp.fileguard import DataError
    from xsharp.spec import SpecError

    leaky = public_reason(ValueError("could not convert string to float: 'root:$6$secret'"))
    assert leaky == "ValueError in the job's runner (the server's log has the details)"
    assert public_reason(DataError("t.csv: missing column 'label'")) == "t.csv: missing column 'label'"
    assert public_reason(SpecError(["model: too big"], "job")) == "job: model: too big"
