"""Two hosts, one playbook, one cluster: scripts/netns-hosts.sh makes two network namespaces with their own
addresses and sshd (xsharp-h1 10.231.0.1, xsharp-h2 10.231.0.2, the controller 10.231.0.254 on a bridge),
`xsharp cluster up` provisions them over ssh (h1: Ray head, xsharp server, exporter; h2: Ray worker joining
h1 with the token the playbook carried over, exporter), and a data-parallel job submitted to the server
from this namespace trains across the two-node Ray cluster that results.

Each node offers Ray one CPU, so the job's two 1-CPU workers can only run one on each host; the test also
watches for them: a process's network namespace is the host it runs on. The namespaces share this
machine's filesystem, so each host has its own prefix (and Ray temp dir) under the test's root; their
venvs reuse this venv's dependencies and take xsharp from a wheel of a snapshot of this checkout.
Needs root (CI runs as root): without it, or without iproute2/openssh-server, the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from .test_ansible import BIN, REPO, _kill_under, _recap, _tool, _xsharp, snapshot_source

NETNS = REPO / "scripts" / "netns-hosts.sh"
HOSTS = {"h1": "10.231.0.1", "h2": "10.231.0.2"}
SERVER = f"http://{HOSTS['h1']}:8080"


def _netns(action: str, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XSHARP_NETNS_VENV": sys.prefix}
    return subprocess.run(["bash", str(NETNS), action, str(root)], capture_output=True, text=True, env=env, timeout=120)


def _host_of_namespace() -> dict[int, str]:
    """Network-namespace inode -> host name, for the namespaces netns-hosts.sh made."""
    return {os.stat(f"/run/netns/xsharp-{h}").st_ino: h for h in HOSTS}


def _ray_processes(title: str, hosts: dict[int, str]) -> dict[int, str]:
    """pid -> host of every Ray process whose title starts with ray::TITLE inside the two namespaces."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if cmdline.startswith(f"ray::{title}"):
                host = hosts.get(os.stat(f"/proc/{entry}/ns/net").st_ino)
                if host:
                    found[int(entry)] = host
        except OSError:
            continue
    return found


def _api(path: str, token: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(
        SERVER + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def cluster():
    _tool("ansible-playbook")
    if os.geteuid() != 0:
        pytest.fail("the two-host test needs root to create network namespaces (ip netns add); CI runs as root")
    # Short root: Ray's unix sockets live under each host's prefix and paths are limited to 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="xs-nn-", dir="/tmp"))
    _netns("down", root)  # namespaces left by a run that was killed
    try:
        up = _netns("up", root)
        if up.returncode != 0:
            pytest.fail(f"cannot create the two hosts (network namespaces, sshd): {up.stdout}{up.stderr}")
        extra = {"xsharp_wheel_dir": str(root / "wheels"), "xsharp_source_dir": str(snapshot_source(root / "src"))}
        (root / "vars.json").write_text(json.dumps(extra))
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        t0 = time.monotonic()
        proc = _xsharp("cluster", "up", "--inventory", str(root / "inventory.ini"), "-e", f"@{root / 'vars.json'}", env=env, timeout=500)
        provision = {"rc": proc.returncode, "out": proc.stdout + proc.stderr, "seconds": time.monotonic() - t0}
        token = ""
        if proc.returncode == 0:
            # An operator's first step on the server host: a user and its API token.
            added = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    "xsharp-h1",
                    str(root / "h1/opt/xsharp/venv/bin/xsharp"),
                    "users",
                    "add",
                    "tester",
                    "--admin",
                    "--home",
                    str(root / "h1/var/lib/xsharp"),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert added.returncode == 0, added.stderr
            token = added.stdout.strip()
        yield {"root": root, "provision": provision, "token": token}
    finally:
        down = _netns("down", root)
        _kill_under(str(root))
        shutil.rmtree(root, ignore_errors=True)
        assert down.returncode == 0, down.stderr


def test_playbook_provisions_both_hosts(cluster):
    run = cluster["provision"]
    assert run["rc"] == 0, run["out"][-8000:]
    recap = _recap(run["out"])
    assert recap.get("failed") == 0 and recap.get("unreachable") == 0, run["out"][-8000:]
    assert "h1 " in run["out"].split("PLAY RECAP")[-1] and "h2 " in run["out"].split("PLAY RECAP")[-1]
    root = cluster["root"]
    # The worker holds the head's token, carried over by the playbook.
    head_token = (root / "h1/etc/xsharp/ray_auth_token").read_text()
    assert (root / "h2/etc/xsharp/ray_auth_token").read_text() == head_token
    assert oct((root / "h2/etc/xsharp/ray_auth_token").stat().st_mode & 0o777) == "0o600"
    # Each node binds its own address and keeps its own Ray temp dir.
    worker_unit = (root / "h2/etc/systemd/system/xsharp-ray-worker.service").read_text()
    assert f"--node-ip-address={HOSTS['h2']}" in worker_unit and f"--address={HOSTS['h1']}:6379" in worker_unit
    assert f"--temp-dir={root}/h2/tmp/ray" in worker_unit
    print(f"provisioned h1 and h2 in {run['seconds']:.1f}s, recap {recap}")


def test_cluster_has_both_nodes(cluster):
    assert cluster["token"], cluster["provision"]["out"][-4000:]
    deadline, nodes = time.monotonic() + 60, []
    while time.monotonic() < deadline:  # the worker's raylet is up; its registration may trail by a moment
        nodes = _api("/v1/cluster", cluster["token"])["nodes"]
        if len(nodes) == 2:
            break
        time.sleep(1)
    assert sorted(n["address"] for n in nodes) == sorted(HOSTS.values()), nodes
    assert all(n["cpus"] == 1.0 for n in nodes), nodes


def test_exporters_on_both_hosts(cluster):
    for host, address in HOSTS.items():
        with urllib.request.urlopen(f"http://{address}:9400/metrics", timeout=30) as resp:
            body = resp.read().decode()
        assert resp.status == 200 and "xsharp_node_healthy" in body, f"{host}: {body[:500]}"


def test_data_parallel_job_spans_both_hosts(cluster):
    token = cluster["token"]
    assert token, cluster["provision"]["out"][-4000:]
    env = {**os.environ, "XSHARP_URL": SERVER, "XSHARP_TOKEN": token}
    t0 = time.monotonic()
    submitted = _xsharp("submit", str(REPO / "examples/digits-dbn.yaml"), "-o", "json", env=env, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    hosts, workers = _host_of_namespace(), {}
    job: dict = {}
    while time.monotonic() - t0 < 300:
        workers |= _ray_processes("DataParallelWorker", hosts)
        job = _api(f"/v1/jobs/{job_id}", token)
        if job["state"] in ("SUCCEEDED", "FAILED"):
            break
        time.sleep(0.5)
    seconds = time.monotonic() - t0
    assert job.get("state") == "SUCCEEDED", json.dumps({k: job.get(k) for k in ("state", "error", "events")}, indent=1)[-4000:]
    result = job["result"]
    assert result["mode"] == "data_parallel" and result["workers"] == 2
    assert result["test_accuracy"] >= 0.90, result["test_accuracy"]
    # Two worker processes, one in each host's network namespace.
    assert len(workers) == 2 and sorted(workers.values()) == ["h1", "h2"], workers
    print(
        f"job {job_id}: test accuracy {100 * result['test_accuracy']:.2f} %, training {result['train_seconds']:.1f}s, "
        f"submit to done {seconds:.1f}s; workers: " + ", ".join(f"pid {p} on {h} ({HOSTS[h]})" for p, h in sorted(workers.items()))
    )
