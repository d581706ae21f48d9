"""The node exporter: GPUs under DCGM-exporter names, plus what DCGM lacks off Kubernetes.

``NodeCollector`` is a prometheus_client custom collector. Each ``collect()`` (one scrape)
reads NVML, /proc and statvfs, runs the health checks on what it read, and asks the optional
``JobView`` for job and queue figures. Nothing polls in the background. A failure in any one
part (a GPU, a field, /proc, the job store) drops that part's values and is counted in
``xsharp_exporter_errors_total``; the rest of the scrape is still served.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from xsharp import __version__

from . import host
from .gpu import GPU_METRICS, LABELS, GPUReader
from .health import CHECKS, CheckResult, HealthConfig, evaluate, pci_gpu_count
from .jobs import JobView, attribute

log = logging.getLogger("xsharp.appliance")

DEFAULT_PORT = 9400  # dcgm-exporter's port: dashboards and scrape configs that expect it work unchanged
# The same bounds, written the same way ("60", not "60.0"), as the xsharp server's /metrics
# (xsharp/api/system.py WAIT_BUCKETS): when both expose the queue, `max by (le)` sees one bucket set.
QUEUE_WAIT_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


class NodeCollector(Collector):
    """One node's GPUs, host, health and (with a JobView) jobs, read on every scrape.

    ``nvml`` defaults to ``pynvml`` (nvidia-ml-py); pass a module with the same API to read
    something else. Without a driver the collector serves everything else with zero GPUs.
    """

    def __init__(
        self,
        nvml: Any = None,
        *,
        hostname: str | None = None,
        job_view: JobView | None = None,
        health: HealthConfig = HealthConfig(),
        proc: str = "/proc",
        pci_devices: str = "/sys/bus/pci/devices",
    ):
        if nvml is None:
            import pynvml as nvml
        self.hostname = hostname or socket.gethostname()
        self.job_view = job_view
        self.health = health
        self.proc = proc
        self.expected_gpus = health.expected_gpus if health.expected_gpus is not None else (pci_gpu_count(pci_devices) or None)
        self.errors: Counter[tuple[str, str]] = Counter()  # (component, field) outside NVML
        self._failing: dict[str, str] = {}
        self._lock = threading.Lock()
        self.gpus = GPUReader(nvml, self.hostname)

    def describe(self) -> list[Metric]:
        return []  # registering must not scrape the GPUs

    def close(self) -> None:
        self.gpus.close()

    # ------------------------------------------------------------------ the scrape
    def collect(self) -> Iterator[Metric]:
        with self._lock:
            started = time.perf_counter()
            families: list[Metric] = []
            try:
                readings = self.gpus.read()
            except Exception as e:  # read() counts NVML errors itself; this is for the unforeseen
                self.errors[("nvml", type(e).__name__)] += 1
                log.debug("GPU metrics skipped: %s", e, exc_info=True)
                readings = []
            families += self._gpu_families(readings)
            disks, disk_errors = self._disks()
            families += self._guard("host", lambda: self._host_families(disks))
            families += self._health_families(readings, disks, disk_errors)
            if self.job_view is not None:
                families += self._job_families(readings)
            families += self._exporter_families(time.perf_counter() - started)
        yield from families

    def _guard(self, component: str, build: Any) -> list[Metric]:
        try:
            return build()
        except Exception as e:  # /proc unreadable, a store that raised: skip this part, count it
            self.errors[(component, type(e).__name__)] += 1
            log.debug("%s metrics skipped: %s", component, e, exc_info=True)
            return []

    def _gpu_families(self, readings: list) -> list[Metric]:
        out: list[Metric] = []
        for name, help_text in GPU_METRICS.items():
            family = GaugeMetricFamily(name, help_text, labels=LABELS)
            for r in readings:
                if name in r.values:
                    family.add_metric(r.gpu.labels, r.values[name])
            if family.samples:
                out.append(family)
        xid = CounterMetricFamily("xsharp_gpu_xid_errors", "XID errors reported by NVML events since the exporter started.", labels=LABELS)
        procs = GaugeMetricFamily("xsharp_gpu_processes", "Compute processes running on the GPU.", labels=LABELS)
        for r in readings:
            if "DCGM_FI_DEV_XID_ERRORS" in r.values:
                xid.add_metric(r.gpu.labels, r.gpu.xid_count)
            if r.pids is not None:
                procs.add_metric(r.gpu.labels, len(r.pids))
        return out + [f for f in (xid, procs) if f.samples]

    def _disks(self) -> tuple[list[host.DiskUsage], dict[str, str]]:
        disks, problems = [], {}
        for path in self.health.disk_paths:
            try:
                disks.append(host.disk_usage(path))
            except OSError as e:
                problems[path] = e.strerror or str(e)
                self.errors[("host", f"statvfs {path}")] += 1
        return disks, problems

    def _host_families(self, disks: list[host.DiskUsage]) -> list[Metric]:
        h = self.hostname
        out: list[Metric] = []
        cpu = CounterMetricFamily("xsharp_host_cpu_seconds", "Seconds all CPUs spent in each mode since boot.", labels=("Hostname", "mode"))
        for mode, seconds in host.cpu_seconds(self.proc).items():
            cpu.add_metric((h, mode), seconds)
        out.append(cpu)
        out.append(GaugeMetricFamily("xsharp_host_cpus", "Logical CPUs on the host.", labels=("Hostname",)))
        out[-1].add_metric((h,), float(_cpu_count()))
        load = GaugeMetricFamily("xsharp_host_load_average", "Load average over the window.", labels=("Hostname", "window"))
        for window, value in zip(("1m", "5m", "15m"), host.load_average(self.proc)):
            load.add_metric((h, window), value)
        out.append(load)
        mem = host.memory_bytes(self.proc)
        for key, name, help_text in (
            ("MemTotal", "xsharp_host_memory_total_bytes", "Physical memory."),
            ("MemAvailable", "xsharp_host_memory_available_bytes", "Memory available to start new work without swapping."),
            ("SwapTotal", "xsharp_host_swap_total_bytes", "Swap space."),
            ("SwapFree", "xsharp_host_swap_free_bytes", "Unused swap space."),
        ):
            if key in mem:
                out.append(GaugeMetricFamily(name, help_text, labels=("Hostname",)))
                out[-1].add_metric((h,), float(mem[key]))
        size = GaugeMetricFamily("xsharp_host_disk_size_bytes", "Size of the filesystem holding the path.", labels=("Hostname", "path"))
        free = GaugeMetricFamily(
            "xsharp_host_disk_free_bytes", "Bytes free for unprivileged users on the filesystem holding the path.", labels=("Hostname", "path")
        )
        for d in disks:
            size.add_metric((h, d.path), float(d.size_bytes))
            free.add_metric((h, d.path), float(d.free_bytes))
        return out + [f for f in (size, free) if f.samples]

    def check_health(self) -> list[CheckResult]:
        """Run the node health checks now (reads the GPUs and disks once), as a scrape would."""
        with self._lock:
            readings = self.gpus.read()
            disks, disk_errors = self._disks()
            return self._evaluate(readings, disks, disk_errors)

    def _evaluate(self, readings: list, disks: list[host.DiskUsage], disk_errors: dict[str, str]) -> list[CheckResult]:
        return evaluate(
            self.health,
            expected_gpus=self.expected_gpus,
            nvml_ok=self.gpus.available,
            nvml_error=self.gpus.init_error,
            visible_gpus=len(readings),
            silent_gpus=[r.gpu.index for r in readings if r.lost or not r.answered],
            temperatures={r.gpu.index: r.values["DCGM_FI_DEV_GPU_TEMP"] for r in readings if "DCGM_FI_DEV_GPU_TEMP" in r.values},
            disks=disks,
            disk_errors=disk_errors,
        )

    def _health_families(self, readings: list, disks: list[host.DiskUsage], disk_errors: dict[str, str]) -> list[Metric]:
        results = self._evaluate(readings, disks, disk_errors)
        self._log_transitions(results)
        h = self.hostname
        healthy = GaugeMetricFamily("xsharp_node_healthy", "1 when every node health check passes, else 0.", labels=("Hostname",))
        healthy.add_metric((h,), float(all(r.ok for r in results)))
        checks = GaugeMetricFamily(
            "xsharp_node_health_check", f"1 when the check passes, 0 when it fails; checks: {', '.join(CHECKS)}.", labels=("Hostname", "check")
        )
        for r in results:
            checks.add_metric((h, r.check), float(r.ok))
        visible = GaugeMetricFamily("xsharp_gpus_visible", "GPUs NVML enumerates on this node.", labels=("Hostname",))
        visible.add_metric((h,), float(len(readings)))
        out: list[Metric] = [healthy, checks, visible]
        if self.expected_gpus is not None:
            out.append(GaugeMetricFamily("xsharp_gpus_expected", "GPUs this node should have (configured, or found on the PCI bus).", labels=("Hostname",)))
            out[-1].add_metric((h,), float(self.expected_gpus))
        return out

    def _log_transitions(self, results: list) -> None:
        for r in results:
            was = self._failing.get(r.check)
            if not r.ok and was != r.detail:
                log.warning("health check %s failing: %s", r.check, r.detail)
                self._failing[r.check] = r.detail
            elif r.ok and was is not None:
                log.info("health check %s passes again: %s", r.check, r.detail)
                del self._failing[r.check]

    def _job_families(self, readings: list) -> list[Metric]:
        view = self.job_view
        out: list[Metric] = []
        out += self._guard("jobs", lambda: self._running_job_families(view.running_jobs(), readings))
        out += self._guard("jobs", lambda: job_state_families(view.jobs_by_state()))
        out += self._guard("jobs", lambda: queue_wait_families(view.queue_wait_seconds()))
        return out

    def _running_job_families(self, jobs: list[dict], readings: list) -> list[Metric]:
        valid = []
        for job in jobs:
            if not isinstance(job, dict) or "job_id" not in job or "user" not in job:
                self.errors[("jobs", "running_jobs: entry without job_id/user")] += 1
                continue
            valid.append(job)
        held = attribute(
            valid,
            {r.gpu.index: r.pids for r in readings if r.pids},
            {r.gpu.index: r.gpu.uuid for r in readings},
            self.proc,
        )
        by_index = {r.gpu.index: r.gpu for r in readings}
        info = GaugeMetricFamily(
            "xsharp_gpu_job_info", "1 for each GPU held by an xsharp job (by process or placement).", labels=("gpu", "UUID", "Hostname", "job_id", "user")
        )
        for index in sorted(held):
            gpu = by_index[index]
            for job in held[index]:
                info.add_metric((str(index), gpu.uuid, self.hostname, str(job["job_id"]), str(job["user"])), 1.0)
        per_job = {
            "samples_per_second": GaugeMetricFamily(
                "xsharp_job_samples_per_second", "Training throughput last reported by the job.", labels=("job_id", "user")
            ),
            "loss": GaugeMetricFamily("xsharp_job_loss", "Training loss last reported by the job.", labels=("job_id", "user")),
            "step": GaugeMetricFamily("xsharp_job_step", "Training step last reported by the job.", labels=("job_id", "user")),
            "failures": GaugeMetricFamily("xsharp_job_failures", "Failed runs of the job so far (it was retried after each).", labels=("job_id", "user")),
        }
        for job in valid:
            labels = (str(job["job_id"]), str(job["user"]))
            for key, family in per_job.items():
                value = job.get(key, 0 if key == "failures" else None)
                if value is None:
                    continue
                try:
                    family.add_metric(labels, float(value))
                except (TypeError, ValueError):
                    self.errors[("jobs", f"running_jobs: {key}")] += 1
        return [info] + [f for f in per_job.values() if f.samples]

    def _exporter_families(self, seconds: float) -> list[Metric]:
        h = self.hostname
        errors = CounterMetricFamily(
            "xsharp_exporter_errors",
            "Values the exporter could not read, by component (nvml, host, jobs), GPU and field.",
            labels=("Hostname", "component", "gpu", "field"),
        )
        for (gpu, call), n in sorted(self.gpus.errors.items()):
            errors.add_metric((h, "nvml", gpu, call), n)
        for (component, what), n in sorted(self.errors.items()):
            errors.add_metric((h, component, "", what), n)
        duration = GaugeMetricFamily(
            "xsharp_exporter_scrape_duration_seconds", "Time this scrape took to read everything (before formatting).", labels=("Hostname",)
        )
        duration.add_metric((h,), seconds)
        build = GaugeMetricFamily(
            "xsharp_exporter_build_info",
            "Exporter version and NVIDIA driver version (empty without a driver).",
            labels=("Hostname", "version", "driver_version"),
        )
        build.add_metric((h, __version__, self.gpus.driver_version), 1.0)
        return [f for f in (errors,) if f.samples] + [duration, build]


def job_state_families(counts: dict[str, int]) -> list[Metric]:
    """xsharp_jobs{state}: the same family wherever it is served (exporter or server)."""
    family = GaugeMetricFamily("xsharp_jobs", "Jobs in the store by state (cluster-wide).", labels=("state",))
    for state, n in sorted(counts.items()):
        family.add_metric((str(state).upper(),), float(n))
    return [family]


def queue_wait_families(waits: list[float]) -> list[Metric]:
    """How long the jobs now waiting have waited: a gauge histogram (a snapshot, not a counter) and the oldest."""
    waits = sorted(float(w) for w in waits)
    buckets = [(str(le), float(bisect_right(waits, le))) for le in QUEUE_WAIT_BUCKETS] + [("+Inf", float(len(waits)))]
    hist = GaugeHistogramMetricFamily(
        "xsharp_queue_wait_seconds", "How long each job now waiting in the queue has waited.", buckets=buckets, gsum_value=sum(waits)
    )
    oldest = GaugeMetricFamily(
        "xsharp_queue_oldest_wait_seconds", "Wait of the job that has been queued longest (0 when the queue is empty).", value=waits[-1] if waits else 0.0
    )
    return [hist, oldest]


def _cpu_count() -> int:
    return os.cpu_count() or 1


def registry_for(collector: NodeCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)  # the exporter's own CPU and memory
    return registry


def serve(collector: NodeCollector, host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> tuple[Any, threading.Thread]:
    """Serve /metrics on host:port from a thread; returns (server, thread). Port 0 picks a free port."""
    return start_http_server(port, addr=host, registry=registry_for(collector))
