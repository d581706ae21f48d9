"""Helpers for tests of the job service: a real `xsharp server` process on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from tests.helpers import ROOT, TINY

XSHARP = str(Path(sys.executable).with_name("xsharp"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 60, every: float = 0.2, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def long_spec(name: str, epochs: int = 2500, cpus: float = 2, priority: int = 0) -> dict:
    """A local job that trains for a few seconds on 300 rows (long enough to pause or preempt)."""
    return TINY | {
        "name": name,
        "data": {"dataset": "digits", "limit": 300},
        "train": TINY["train"] | {"epochs": epochs},
        "resources": {"cpus_per_worker": cpus},
        "priority": priority,
    }


def short_spec(name: str, cpus: float = 2, priority: int = 0) -> dict:
    return TINY | {"name": name, "resources": {"cpus_per_worker": cpus}, "priority": priority}


class Server:
    """`xsharp server` on a free loopback port, on the test session's Ray cluster."""

    def __init__(self, home: Path, ray_address: str | None, *args: str, env: dict | None = None):
        self.home, self.port, self.env = home, free_port(), env or {}
        self.url = f"http://127.0.0.1:{self.port}"
        joins = ["--address", ray_address] if ray_address else []  # None: the server embeds its own Ray
        self.args = [XSHARP, "server", "--port", str(self.port), "--home", str(home), *joins, "--tick", "0.2", *args]
        self.proc: subprocess.Popen | None = None
        self.log = home.parent / f"{home.name}-server.out"  # outside the store: it shows the first admin token
        self.client_config = home.parent / f"{home.name}-client-config"

    def start(self) -> Server:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("XSHARP_RAY_ADDRESS", "RAY_ADDRESS")}
        env["XSHARP_CONFIG"] = str(self.client_config)  # the first start writes the admin's token here, not in ~
        env.update(self.env)
        self.proc = subprocess.Popen(self.args, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)

        def healthy():
            assert self.proc.poll() is None, self.log.read_text()
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, what="the server to answer /healthz")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def add_user(self, name: str, admin: bool = False) -> str:
        args = [XSHARP, "users", "add", name, "--home", str(self.home)] + (["--admin"] if admin else [])
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


def wait_state(api: httpx.Client, job_id: int, states, timeout: float = 90) -> dict:
    states = {states} if isinstance(states, str) else set(states)

    def reached():
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("FAILED",) and "FAILED" not in states:
            raise AssertionError(f"job {job_id} failed: {job.get('error')}")
        return job if job["state"] in states else None

    return wait_for(reached, timeout, what=f"job {job_id} to reach {sorted(states)}")


def first_start(job: dict) -> float:
    return next(e["ts"] for e in job["events"] if e["kind"] == "running")


@contextmanager
def live_app(store) -> Iterator[str]:
    """The job service's app on ``store`` (no scheduler, no Ray) under uvicorn on a free loopback port: its URL."""
    from xsharp.api import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, 0.05, "uvicorn")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
