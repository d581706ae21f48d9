"""The node exporter in-process: DCGM series and labels, error isolation, zero-GPU mode, XID
events, GPM, health checks, host metrics and job attribution. NVML is the stand-in from
tests/fake_nvml.py (this machine has no GPU); /proc, sysfs, processes and HTTP are real.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pynvml
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_nvml import FakeNVML, a100, h100
from tests.helpers import ROOT, run_cli
from xsharp.appliance import HealthConfig, JobView, NodeCollector, registry_for
from xsharp.appliance.health import CHECKS, evaluate, pci_gpu_count
from xsharp.appliance.host import DiskUsage, cpu_seconds, load_average, memory_bytes
from xsharp.appliance.jobs import load_job_view

DCGM_LABELS = {"gpu", "UUID", "modelName", "Hostname", "pci_bus_id"}
ISSUE_SERIES = [  # the series issue 7 names, under dcgm-exporter's names
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_MEMORY_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_ROW_REMAP_PENDING",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    "DCGM_FI_DEV_XID_ERRORS",
]
GPM_SERIES = [
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_PROF_SM_ACTIVE",
    "DCGM_FI_PROF_SM_OCCUPANCY",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "DCGM_FI_PROF_DRAM_ACTIVE",
]


def HC(**kw) -> HealthConfig:
    """Health settings for tests that are not about the disk (this machine's disk may be full)."""
    return HealthConfig(**{"min_free_disk_percent": 0.0, **kw})


def scrape(collector: NodeCollector) -> dict[str, list[tuple[dict, float]]]:
    """The exposition text as Prometheus would read it: sample name -> [(labels, value)]."""
    text = generate_latest(registry_for(collector)).decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def value(samples, name, **labels) -> float:
    found = [v for lab, v in samples.get(name, []) if all(lab.get(k) == str(w) for k, w in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples in {samples.get(name)}"
    return found[0]


def checks(samples) -> dict[str, float]:
    return {lab["check"]: v for lab, v in samples["xsharp_node_health_check"]}


@pytest.fixture
def two_gpus():
    return FakeNVML([h100(temp=41), a100(temp=52, fb_used=3 * 1024**3 + 5)])


def test_every_dcgm_series_is_present_with_dcgm_labels_and_values(two_gpus):
    c = NodeCollector(two_gpus, hostname="node-a", health=HC(expected_gpus=2))
    scrape(c)
    time.sleep(0.12)  # GPM ratios need two samples at least 100 ms apart
    s = scrape(c)
    for name in ISSUE_SERIES:
        assert name in s, f"{name} missing"
        assert len(s[name]) == 2, name
        for labels, _ in s[name]:
            assert set(labels) == DCGM_LABELS, (name, labels)
    g0, g1 = two_gpus.gpus
    assert value(s, "DCGM_FI_DEV_GPU_TEMP", gpu=0) == 41 and value(s, "DCGM_FI_DEV_GPU_TEMP", gpu=1) == 52
    assert value(s, "DCGM_FI_DEV_FB_USED", gpu=1) == 3072  # whole MiB, as DCGM and nvidia-smi report
    assert value(s, "DCGM_FI_DEV_FB_FREE", gpu=1) == 80 * 1024 - 3072 - 512 - 1  # the driver's reserve is neither
    assert value(s, "DCGM_FI_DEV_FB_RESERVED", gpu=1) == 512 and value(s, "DCGM_FI_DEV_FB_TOTAL", gpu=1) == 80 * 1024
    assert value(s, "DCGM_FI_DEV_POWER_USAGE", gpu=1) == 250.0  # mW -> W
    assert value(s, "DCGM_FI_DEV_SM_CLOCK", gpu=1) == 1410 and value(s, "DCGM_FI_DEV_MEM_CLOCK", gpu=0) == 2619
    assert value(s, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", gpu=0) == 1_000_000  # mJ, as DCGM
    labels = next(lab for lab, _ in s["DCGM_FI_DEV_GPU_UTIL"] if lab["gpu"] == "1")
    assert labels == {"gpu": "1", "UUID": g1.uuid, "modelName": "NVIDIA A100-SXM4-80GB", "Hostname": "node-a", "pci_bus_id": g1.bus_id}
    # GPM profiling ratios only where the GPU supports GPM (the H100), as fractions like DCGM's
    for name in GPM_SERIES:
        assert [lab["gpu"] for lab, _ in s[name]] == ["0"], name
    assert value(s, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", gpu=0) == pytest.approx(0.42)
    assert value(s, "xsharp_gpus_visible", Hostname="node-a") == 2
    assert value(s, "xsharp_node_healthy", Hostname="node-a") == 1
    assert "xsharp_exporter_errors_total" not in s
    assert value(s, "xsharp_exporter_build_info", driver_version="550.54.15") == 1


def test_an_old_driver_without_memory_info_v2_counts_reserved_as_used():
    nvml = FakeNVML([h100(fb_used=1024**3)], memory_v2=False)
    c = NodeCollector(nvml, hostname="n")
    scrape(c)
    s = scrape(c)
    assert value(s, "DCGM_FI_DEV_FB_USED", gpu=0) == 1024 + 512 and "DCGM_FI_DEV_FB_RESERVED" not in s
    assert "xsharp_exporter_errors_total" not in s
    assert nvml.calls["nvmlDeviceGetMemoryInfo"] == 3  # v2 tried once, then v1 on each scrape


def test_one_gpu_erroring_never_breaks_the_scrape_and_errors_are_counted():
    nvml = FakeNVML(
        [
            h100(),
            a100(
                failing={
                    "nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_UNKNOWN,
                    "NVML_FI_DEV_MEMORY_TEMP": pynvml.NVML_ERROR_UNKNOWN,
                    "NVML_FI_DEV_PCIE_REPLAY_COUNTER": pynvml.NVML_ERROR_NOT_SUPPORTED,
                    "nvmlDeviceGetClockInfo(MEM)": pynvml.NVML_ERROR_NOT_SUPPORTED,
                }
            ),
            h100(),
        ]
    )
    c = NodeCollector(nvml, hostname="n", health=HC(expected_gpus=3))
    nvml.gpus[2].lost = True  # falls off the bus after enumeration
    scrape(c)
    s = scrape(c)
    assert len(s["DCGM_FI_DEV_GPU_UTIL"]) == 2  # GPUs 0 and 1 still reported
    assert value(s, "DCGM_FI_DEV_POWER_USAGE", gpu=0) == 300.0
    assert not [lab for lab, _ in s["DCGM_FI_DEV_POWER_USAGE"] if lab["gpu"] == "1"]  # skipped, not zero
    assert value(s, "DCGM_FI_DEV_GPU_TEMP", gpu=1) == 40  # the rest of GPU 1 is there
    assert {lab["gpu"] for lab, _ in s["DCGM_FI_DEV_MEMORY_TEMP"]} == {"0"}
    assert value(s, "xsharp_exporter_errors_total", gpu=1, field="nvmlDeviceGetPowerUsage") == 2  # two scrapes
    assert value(s, "xsharp_exporter_errors_total", gpu=1, field="NVML_FI_DEV_MEMORY_TEMP") == 2
    assert value(s, "xsharp_exporter_errors_total", gpu=2, field="nvmlDeviceGetUtilizationRates") == 2
    # "not supported" is not an error, and the GPU is not asked again
    fields = {lab["field"] for lab, _ in s["xsharp_exporter_errors_total"]}
    assert "NVML_FI_DEV_PCIE_REPLAY_COUNTER" not in fields and "nvmlDeviceGetClockInfo(MEM)" not in fields
    assert {lab["gpu"] for lab, _ in s["DCGM_FI_DEV_PCIE_REPLAY_COUNTER"]} == {"0"}
    assert nvml.calls["nvmlDeviceGetClockInfo(MEM)"] == 2 + 1  # GPU 0 twice, GPU 1 once then remembered
    # a lost GPU fails gpus_responding, and is said once per scrape (not once per call)
    assert checks(s)["gpus_responding"] == 0 and value(s, "xsharp_node_healthy") == 0
    assert nvml.calls.get("nvmlDeviceGetTemperature", 0) == 4  # GPUs 0 and 1, two scrapes; never the lost one


def test_zero_gpu_mode_serves_host_health_and_jobs_and_says_so_once(caplog):
    caplog.set_level(logging.INFO, logger="xsharp.appliance")
    view = StaticJobs()
    c = NodeCollector(FakeNVML([h100()], driver_loaded=False), hostname="cpu-node", job_view=view, health=HC(), pci_devices="/nonexistent")
    for _ in range(3):
        s = scrape(c)
    assert not [n for n in s if n.startswith("DCGM_")]
    assert value(s, "xsharp_gpus_visible") == 0
    assert value(s, "xsharp_node_healthy", Hostname="cpu-node") == 1  # no GPU expected: healthy
    assert value(s, "xsharp_host_memory_total_bytes") > 0 and value(s, "xsharp_host_cpu_seconds_total", mode="idle") > 0
    assert value(s, "xsharp_jobs", state="RUNNING") == 2
    assert "xsharp_gpu_job_info" not in s  # no GPU to attribute
    assert value(s, "xsharp_job_samples_per_second", job_id="7") == 1500.0
    said = [r for r in caplog.records if "no GPU" in r.getMessage()]
    assert len(said) == 1 and "serving host, health and job metrics with zero GPUs" in said[0].getMessage()


def test_a_node_that_should_have_gpus_fails_driver_and_gpu_count_without_nvml():
    c = NodeCollector(FakeNVML([], driver_loaded=False), hostname="n", health=HC(expected_gpus=8))
    s = scrape(c)
    assert checks(s) == {"driver": 0, "gpu_count": 0, "gpus_responding": 1, "gpu_temperature": 1, "disk_free": 1}
    assert value(s, "xsharp_gpus_expected") == 8


def test_nvml_init_is_retried_on_scrape_after_the_driver_loads(monkeypatch):
    nvml = FakeNVML([h100()], driver_loaded=False)
    c = NodeCollector(nvml, hostname="n")
    assert "DCGM_FI_DEV_GPU_UTIL" not in scrape(c)
    nvml.driver_loaded = True
    assert "DCGM_FI_DEV_GPU_UTIL" not in scrape(c)  # not retried on every scrape
    monkeypatch.setattr(c.gpus, "_tried_at", c.gpus._tried_at - 61)
    assert len(scrape(c)["DCGM_FI_DEV_GPU_UTIL"]) == 1


def test_xid_events_are_counted_per_gpu_without_blocking(two_gpus):
    c = NodeCollector(two_gpus, hostname="n")
    s = scrape(c)
    assert value(s, "xsharp_gpu_xid_errors_total", gpu=1) == 0 and value(s, "DCGM_FI_DEV_XID_ERRORS", gpu=1) == 0
    two_gpus.events += [(1, 79), (1, 48), (0, 13)]
    s = scrape(c)  # the stand-in asserts every wait has a zero timeout
    assert value(s, "xsharp_gpu_xid_errors_total", gpu=1) == 2 and value(s, "DCGM_FI_DEV_XID_ERRORS", gpu=1) == 48
    assert value(s, "xsharp_gpu_xid_errors_total", gpu=0) == 1 and value(s, "DCGM_FI_DEV_XID_ERRORS", gpu=0) == 13
    s = scrape(c)
    assert value(s, "xsharp_gpu_xid_errors_total", gpu=1) == 2  # a counter: kept, not reset per scrape


@pytest.mark.parametrize(
    "failing, make",
    [
        ("gpu_temperature", lambda: (FakeNVML([h100(), h100(temp=91)]), HC(expected_gpus=2))),
        ("gpu_count", lambda: (FakeNVML([h100(), h100()]), HC(expected_gpus=4))),
        ("disk_free", lambda: (FakeNVML([h100()]), HealthConfig(expected_gpus=1, min_free_disk_percent=100.0))),
        (
            "gpus_responding",
            lambda: (
                FakeNVML(
                    [
                        h100(),
                        h100(
                            failing={
                                k: pynvml.NVML_ERROR_UNKNOWN
                                for k in (
                                    "nvmlDeviceGetUtilizationRates",
                                    "nvmlDeviceGetMemoryInfo",
                                    "nvmlDeviceGetTemperature",
                                    "nvmlDeviceGetPowerUsage",
                                    "nvmlDeviceGetClockInfo(SM)",
                                    "nvmlDeviceGetClockInfo(MEM)",
                                    "nvmlDeviceGetFieldValues",
                                    "nvmlDeviceGetComputeRunningProcesses",
                                    "nvmlGpmSampleGet",
                                )
                            }
                        ),
                    ]
                ),
                HC(expected_gpus=2),
            ),
        ),
    ],
)
def test_health_check_names_the_failing_check(failing, make, caplog):
    nvml, health = make()
    c = NodeCollector(nvml, hostname="n", health=health)
    s = scrape(c)
    assert value(s, "xsharp_node_healthy") == 0
    assert checks(s) == {name: float(name != failing) for name in CHECKS}
    assert any(f"health check {failing} failing" in r.getMessage() for r in caplog.records)


def test_health_details_say_what_failed():
    results = {
        r.check: r
        for r in evaluate(
            HealthConfig(max_gpu_temp_c=85, min_free_disk_percent=10),
            expected_gpus=8,
            nvml_ok=True,
            nvml_error="",
            visible_gpus=7,
            silent_gpus=[3],
            temperatures={0: 40.0, 5: 88.0},
            disks=[DiskUsage("/data", 1000, 50)],
            disk_errors={"/scratch": "No such file or directory"},
        )
    }
    assert results["gpu_count"].detail == "7 GPU(s) visible, 8 expected"
    assert results["gpus_responding"].detail == "GPU(s) 3 did not answer NVML"
    assert results["gpu_temperature"].detail == "GPU 5 at 88 C (limit 85 C)"
    assert "/data has 5.0% free" in results["disk_free"].detail and "/scratch: No such file" in results["disk_free"].detail
    assert not any(r.ok for r in results.values() if r.check != "driver")


def test_pci_gpu_count_counts_nvidia_gpus_but_not_nvswitches(tmp_path):
    for name, vendor, cls in [
        ("0000:18:00.0", "0x10de", "0x030200"),
        ("0000:2a:00.0", "0x10de", "0x030000"),
        ("0000:05:00.0", "0x10de", "0x068000"),
        ("0000:00:01.0", "0x8086", "0x030000"),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "vendor").write_text(vendor + "\n")
        (tmp_path / name / "class").write_text(cls + "\n")
    assert pci_gpu_count(tmp_path) == 2
    assert pci_gpu_count(tmp_path / "missing") is None
    c = NodeCollector(FakeNVML([h100()]), hostname="n", health=HC(), pci_devices=str(tmp_path))
    assert checks(scrape(c))["gpu_count"] == 0  # 2 on the bus, 1 visible to NVML


def test_host_metrics_read_proc(tmp_path):
    (tmp_path / "stat").write_text("cpu  1000 20 300 5000 40 0 6 0 0 0\ncpu0 500 10 150 2500 20 0 3 0 0 0\n")
    (tmp_path / "meminfo").write_text("MemTotal:       16384 kB\nMemFree:  1 kB\nMemAvailable:    8192 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n")
    (tmp_path / "loadavg").write_text("0.50 1.25 2.00 1/123 4567\n")
    hz = os.sysconf("SC_CLK_TCK")
    assert cpu_seconds(tmp_path) == {
        "user": 1000 / hz,
        "nice": 20 / hz,
        "system": 300 / hz,
        "idle": 5000 / hz,
        "iowait": 40 / hz,
        "irq": 0.0,
        "softirq": 6 / hz,
        "steal": 0.0,
    }
    assert memory_bytes(tmp_path) == {"MemTotal": 16384 * 1024, "MemAvailable": 8192 * 1024, "SwapTotal": 0, "SwapFree": 0}
    assert load_average(tmp_path) == (0.5, 1.25, 2.0)
    s = scrape(NodeCollector(FakeNVML([]), hostname="n", proc=str(tmp_path)))
    assert value(s, "xsharp_host_cpu_seconds_total", mode="idle") == 5000 / hz
    assert value(s, "xsharp_host_memory_available_bytes") == 8192 * 1024
    assert value(s, "xsharp_host_load_average", window="5m") == 1.25
    st = os.statvfs("/")
    assert value(s, "xsharp_host_disk_size_bytes", path="/") == st.f_blocks * st.f_frsize


def test_unreadable_proc_drops_host_metrics_only(tmp_path):
    s = scrape(NodeCollector(FakeNVML([h100()]), hostname="n", proc=str(tmp_path / "nope")))
    assert "xsharp_host_cpu_seconds_total" not in s and "DCGM_FI_DEV_GPU_UTIL" in s
    assert value(s, "xsharp_exporter_errors_total", component="host", field="FileNotFoundError") == 1


# ---------------------------------------------------------------------- jobs
class StaticJobs:
    """A tiny JobView: what the job store will answer."""

    def __init__(self, running=None):
        self.running = (
            running
            if running is not None
            else [
                {"job_id": 7, "user": "alice", "pids": [], "gpus": [], "samples_per_second": 1500.0, "loss": 0.31, "step": 120, "failures": 1},
                {"job_id": "8", "user": "bob", "pids": [], "gpus": [], "samples_per_second": None, "loss": None},
            ]
        )

    def running_jobs(self):
        return self.running

    def jobs_by_state(self):
        return {"queued": 3, "RUNNING": 2, "SUCCEEDED": 10}

    def queue_wait_seconds(self):
        return [5.0, 45.0, 45.0, 900.0]


def test_job_view_protocol_is_structural():
    assert isinstance(StaticJobs(), JobView)
    assert not isinstance(object(), JobView)


def test_gpus_are_attributed_by_process_ancestor_and_placement():
    worker = subprocess.Popen(["sleep", "60"])  # a real child of this process: a "helper" of the job's worker
    try:
        nvml = FakeNVML([h100(pids=[worker.pid]), h100(pids=[1]), h100(), h100(pids=[worker.pid])])
        uuid2 = nvml.gpus[2].uuid
        view = StaticJobs(
            [
                {"job_id": 11, "user": "alice", "pids": [os.getpid()], "gpus": [], "samples_per_second": 800.5, "loss": 1.5, "step": 3, "failures": 4},
                {"job_id": 12, "user": "bob", "pids": [999_999_999], "gpus": [uuid2, "3"], "loss": float("nan")},
                {"user": "nobody"},  # malformed: skipped and counted
            ]
        )
        s = scrape(NodeCollector(nvml, hostname="n", job_view=view))
    finally:
        worker.kill()
        worker.wait()
    held = sorted((lab["gpu"], lab["job_id"], lab["user"]) for lab, v in s["xsharp_gpu_job_info"])
    # GPU 0: the worker's child; GPU 1: PID 1 belongs to no job; GPU 2: placed by UUID; GPU 3: both jobs
    assert held == [("0", "11", "alice"), ("2", "12", "bob"), ("3", "11", "alice"), ("3", "12", "bob")]
    lab = next(lab for lab, _ in s["xsharp_gpu_job_info"] if lab["gpu"] == "2")
    assert lab == {"gpu": "2", "UUID": uuid2, "Hostname": "n", "job_id": "12", "user": "bob"}
    assert value(s, "xsharp_job_samples_per_second", job_id=11, user="alice") == 800.5
    assert value(s, "xsharp_job_loss", job_id=11) == 1.5 and value(s, "xsharp_job_step", job_id=11) == 3
    assert value(s, "xsharp_job_failures", job_id=11) == 4 and value(s, "xsharp_job_failures", job_id=12) == 0
    assert value(s, "xsharp_job_loss", job_id=12) != value(s, "xsharp_job_loss", job_id=12)  # NaN passes through
    assert not [lab for lab, _ in s["xsharp_job_samples_per_second"] if lab["job_id"] == "12"]
    assert value(s, "xsharp_exporter_errors_total", component="jobs", field="running_jobs: entry without job_id/user") == 1
    assert value(s, "xsharp_gpu_processes", gpu=0) == 1


def test_jobs_by_state_and_queue_wait_histogram():
    s = scrape(NodeCollector(FakeNVML([]), hostname="n", job_view=StaticJobs()))
    assert value(s, "xsharp_jobs", state="QUEUED") == 3  # states upper-cased
    buckets = {lab["le"]: v for lab, v in s["xsharp_queue_wait_seconds_bucket"]}
    assert buckets == {"1": 0, "5": 1, "15": 1, "60": 3, "300": 3, "900": 4, "3600": 4, "14400": 4, "86400": 4, "+Inf": 4}
    assert value(s, "xsharp_queue_wait_seconds_gcount") == 4 and value(s, "xsharp_queue_wait_seconds_gsum") == 995.0
    assert value(s, "xsharp_queue_oldest_wait_seconds") == 900.0


def test_a_failing_job_store_never_breaks_the_scrape():
    class Broken(StaticJobs):
        def running_jobs(self):
            raise RuntimeError("database is locked")

    s = scrape(NodeCollector(FakeNVML([h100()]), hostname="n", job_view=Broken()))
    assert "DCGM_FI_DEV_GPU_UTIL" in s and value(s, "xsharp_jobs", state="RUNNING") == 2
    assert value(s, "xsharp_exporter_errors_total", component="jobs", field="RuntimeError") == 1


def test_load_job_view_names_the_problem():
    with pytest.raises(ValueError, match="expected module:callable"):
        load_job_view("nocolon")
    with pytest.raises(ValueError, match="cannot import"):
        load_job_view("xsharp_no_such_module:view")
    with pytest.raises(ValueError, match="has no callable"):
        load_job_view("os:no_such_thing")
    with pytest.raises(ValueError, match="lacks running_jobs"):
        load_job_view("builtins:object")
    assert isinstance(load_job_view("tests.test_appliance_exporter:StaticJobs"), JobView)


# ---------------------------------------------------------------------- the command
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_exporter_command_serves_real_nvml_or_zero_gpus_and_stops_on_sigterm(tmp_path):
    port = free_port()
    exe = Path(sys.executable).with_name("xsharp")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}  # --jobs imports this test module
    proc = subprocess.Popen(
        [str(exe), "exporter", "--host", "127.0.0.1", "--port", str(port), "--jobs", "tests.test_appliance_exporter:StaticJobs"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = fetch(f"http://127.0.0.1:{port}/metrics", timeout=30)
        text = fetch(f"http://127.0.0.1:{port}/metrics")
        busy = run_cli("exporter", "--host", "127.0.0.1", "--port", str(port))
        assert busy.returncode == 2 and "already in use" in busy.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "exporter: stopped" in stderr
    samples = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
    assert "xsharp_node_healthy" in samples and "xsharp_host_cpu_seconds_total" in samples and "process_cpu_seconds_total" in samples
    assert 'xsharp_jobs{state="QUEUED"} 3.0' in text
    gpus = samples["xsharp_gpus_visible"].value
    if gpus == 0:  # this machine: no NVML library; the real pynvml path fails cleanly and says so once
        assert stderr.count("no GPU: NVML unavailable") == 1
        assert "DCGM_FI_DEV_GPU_UTIL" not in first
    else:  # a GPU machine: the real NVML answers
        assert text.count("DCGM_FI_DEV_GPU_UTIL{") == gpus


def test_exporter_command_rejects_bad_input():
    r = run_cli("exporter", "--jobs", "nocolon")
    assert r.returncode == 2 and "expected module:callable" in r.stderr
    r = run_cli("exporter", "--disk", "/definitely/not/here")
    assert r.returncode == 2 and "--disk /definitely/not/here: not a directory" in r.stderr
    r = run_cli("exporter", "--port", "70000")
    assert r.returncode == 2


def test_appliance_health_command_exits_1_naming_the_failed_check():
    import json

    r = run_cli("appliance", "health", "--min-free-disk", "100", "-o", "json")
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert not report["healthy"]
    assert [c["check"] for c in report["checks"] if not c["ok"]] == ["disk_free"]
    r = run_cli("appliance", "health", "--min-free-disk", "0")
    assert r.returncode == 0, r.stdout
    assert "disk_free" in r.stdout
