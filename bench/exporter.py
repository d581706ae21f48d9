"""Time scrapes of the node exporter with 8 GPUs; print median and p99 against the 20 ms goal.

    .venv/bin/python bench/exporter.py [--scrapes 200] [--gpus 8] [--nvml auto|real|standin]

Three figures per run: reading only (collect()), a full scrape in-process (collect + text
format), and a scrape over HTTP on loopback, as Prometheus does it. With --nvml auto the real
NVML is used when a driver answers, else the stand-in from tests/fake_nvml.py, which measures
only the exporter's own overhead (no driver calls). The peer row is Prometheus's own /metrics
(Go client) scraped the same way, when the `prometheus` binary is installed.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import generate_latest  # noqa: E402

from xsharp.appliance import HealthConfig, NodeCollector, registry_for, serve  # noqa: E402

GOAL_MS = 20.0


class Jobs:
    """Four running jobs, two GPUs each, as the job store would answer."""

    def __init__(self, uuids: list[str]):
        self.uuids = uuids

    def running_jobs(self):
        return [
            {
                "job_id": j,
                "user": f"user{j % 2}",
                "pids": [100000 + j],
                "gpus": self.uuids[2 * j : 2 * j + 2],
                "samples_per_second": 1000.0 + j,
                "loss": 0.5,
                "step": 10,
                "failures": 0,
            }
            for j in range(4)
        ]

    def jobs_by_state(self):
        return {"QUEUED": 5, "RUNNING": 4, "SUCCEEDED": 120, "FAILED": 3}

    def queue_wait_seconds(self):
        return [float(i * 37) for i in range(5)]


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    s = sorted(samples_ms)
    return statistics.median(s), s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


def timed(fn, n: int) -> list[float]:
    fn()  # warm-up (and the first GPM sample)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read()


def nvml_module(choice: str, gpus: int):
    if choice in ("auto", "real"):
        import pynvml

        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            driver = pynvml.nvmlSystemGetDriverVersion()
            pynvml.nvmlShutdown()
            return pynvml, f"real NVML, driver {driver}, {count} GPUs"
        except pynvml.NVMLError as e:
            if choice == "real":
                sys.exit(f"--nvml real: NVML does not answer here: {e}")
    from tests.fake_nvml import FakeNVML, a100, h100

    fake = FakeNVML([h100(pids=[100000 + i // 2]) if i % 2 == 0 else a100() for i in range(gpus)])
    return fake, f"stand-in NVML, {gpus} GPUs (measures the exporter's own overhead only)"


def peer_prometheus(n: int) -> list[float] | None:
    binary = shutil.which("prometheus")
    if not binary:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "p.yml"
        cfg.write_text("global: {scrape_interval: 1h}\nscrape_configs: []\n")
        proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/data", f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            deadline = time.monotonic() + 30
            while True:
                try:
                    http_get(url)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        return None
                    time.sleep(0.2)
            return timed(lambda: http_get(url), n)
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--gpus", type=int, default=8, help="stand-in GPUs (ignored with the real NVML)")
    parser.add_argument("--nvml", choices=["auto", "real", "standin"], default="auto")
    opts = parser.parse_args()

    nvml, what = nvml_module(opts.nvml, opts.gpus)
    collector = NodeCollector(nvml, hostname="bench", health=HealthConfig(min_free_disk_percent=0.0))
    collector.job_view = Jobs([g.uuid for g in collector.gpus.gpus])
    registry = registry_for(collector)
    server, _ = serve(collector, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    series = sum(1 for line in generate_latest(registry).decode().splitlines() if line and not line.startswith("#"))
    print(f"{what}; {len(collector.gpus.gpus)} GPUs visible, {series} series per scrape, {opts.scrapes} scrapes each")
    rows = [
        ("read only (collect)", timed(lambda: list(collector.collect()), opts.scrapes)),
        ("full scrape in-process", timed(lambda: generate_latest(registry), opts.scrapes)),
        ("scrape over HTTP", timed(lambda: http_get(url), opts.scrapes)),
    ]
    server.shutdown()
    server.server_close()
    collector.close()
    peer = peer_prometheus(opts.scrapes)
    header = f"{'':<32} {'median ms':>10} {'p99 ms':>8} {'p99 / 20 ms goal':>17}"
    print(header)
    print("-" * len(header))
    for name, ms in rows:
        med, p99 = percentiles(ms)
        print(f"{name:<32} {med:>10.2f} {p99:>8.2f} {p99 / GOAL_MS:>17.2f}")
    if peer:
        med, p99 = percentiles(peer)
        http_med = percentiles(rows[2][1])[0]
        print(f"{'peer: Prometheus /metrics (Go)':<32} {med:>10.2f} {p99:>8.2f} {'':>17}   ours/peer median {http_med / med:.2f}")


if __name__ == "__main__":
    main()
