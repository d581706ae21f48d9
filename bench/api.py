"""Job service throughput on loopback.

    .venv/bin/python bench/api.py [--jobs 2000] [--clients 50] [--queued 10000]

1. Submissions: `--clients` concurrent clients POST `--jobs` job specs to a real uvicorn server
   (its own process; no scheduler attached, so every job stays queued and only the submit path
   is measured: auth, validation, SQLite insert). Prints jobs/s and p50 / p99 latency.
2. Scheduling: with `--queued` jobs waiting from 50 users in 3 priority classes, the time one
   tick spends reading the queue from the store and deciding (`plan`), and `plan` alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import TINY  # noqa: E402
from tests.service import free_port, wait_for  # noqa: E402
from xsharp.cluster.scheduler import Resources, Waiting, plan  # noqa: E402
from xsharp.cluster.store import Store  # noqa: E402

SERVE = """
import sys, uvicorn
from xsharp.api import create_app
from xsharp.cluster.store import Store
uvicorn.run(create_app(Store(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]), log_level="error")
"""


async def submit_all(url: str, token: str, jobs: int, clients: int) -> list[float]:
    latencies: list[float] = []
    per_client = [jobs // clients + (1 if i < jobs % clients else 0) for i in range(clients)]

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            for _ in range(n):
                t = time.perf_counter()
                r = await http.post("/v1/jobs", json=TINY)
                latencies.append(time.perf_counter() - t)
                assert r.status_code == 201, r.text

    await asyncio.gather(*(client(n) for n in per_client))
    return latencies


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--queued", type=int, default=10_000)
    opts = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="xsharp-bench-"))
    store = Store(home)
    token = store.add_user("bench")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(home), str(port)], env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url), 30, what="the server")
        t = time.perf_counter()
        latencies = asyncio.run(submit_all(url, token, opts.jobs, opts.clients))
        wall = time.perf_counter() - t
    finally:
        server.terminate()
        server.wait()
    print(f"submissions: {opts.jobs} jobs from {opts.clients} concurrent clients in {wall:.2f} s = {opts.jobs / wall:,.0f} jobs/s")
    print(f"  latency p50 {1000 * pct(latencies, 0.5):.1f} ms, p99 {1000 * pct(latencies, 0.99):.1f} ms, max {1000 * max(latencies):.1f} ms")

    extra = max(0, opts.queued - opts.jobs)
    with store.tx() as db:  # the rest of the queue, inserted directly: only the scheduler is measured here
        db.executemany(
            "INSERT INTO jobs(user, name, spec, priority, cpus, gpus, state, submitted, queued_at) VALUES (?,?,?,?,?,?,?,?,?)",
            [(f"u{i % 50}", "q", "{}", i % 3, 1.0, 0.0, "QUEUED", i, i) for i in range(extra)],
        )
    total = Resources(64, 8)
    tick_times, plan_times = [], []
    for _ in range(5):
        t = time.perf_counter()
        jobs = store.jobs(states=["QUEUED", "PREEMPTED"], limit=1_000_000)
        waiting = [Waiting(j.id, j.user, j.priority, Resources(j.cpus, j.gpus), j.queued_at) for j in jobs]
        t2 = time.perf_counter()
        p = plan(waiting, [], total, total, time.time(), 600)
        plan_times.append(time.perf_counter() - t2)
        tick_times.append(time.perf_counter() - t)
    print(
        f"scheduling with {len(waiting):,} queued jobs: read + decide {1000 * statistics.median(tick_times):.0f} ms, "
        f"decide alone {1000 * statistics.median(plan_times):.1f} ms (median of 5; {len(p.start)} started)"
    )


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
