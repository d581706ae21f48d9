"""The monitoring files against Debian's real Prometheus and promtool.

A live exporter (NVML stand-in: this machine has no GPU; everything else real) is scraped every
second by a real Prometheus started from the prometheus.yml that `xsharp appliance config`
writes. Then every dashboard panel's PromQL (variables substituted) and every alert expression
is queried through Prometheus's HTTP API and must return data; the rules must load and
evaluate cleanly, and the alerts the stand-in's state calls for must be pending or firing.
`promtool test rules` unit-tests each alert on synthetic series.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pynvml
import pytest
import yaml

from tests.fake_nvml import FakeNVML, a100, h100
from tests.helpers import run_cli
from tests.test_appliance_exporter import free_port
from xsharp.appliance import ApplianceConfig, HealthConfig, NodeCollector, serve, write_config
from xsharp.appliance.config import ConfigError, alert_rules, dashboards, expand_host_pattern, inventory_targets, package_file

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(not (PROMETHEUS and PROMTOOL), reason="needs Debian's prometheus package (apt-get install prometheus; .ci/run does)")

HOST = "xs-node-1"
GRAFANA_BUILTINS = {"__rate_interval": "10s", "__range": "5m", "__interval": "5s"}
VARIABLES = {"Hostname": HOST, "gpu": "0|1|2|3", "job_id": "1|2", **GRAFANA_BUILTINS}
PANELS_OF_12239 = {
    "GPU Temperature",
    "GPU Avg. Temp",
    "GPU Power Usage",
    "GPU Power Total",
    "GPU SM Clocks",
    "GPU Utilization",
    "Tensor Core Utilization",
    "GPU Framebuffer Mem Used",
}


# ---------------------------------------------------------------------- PromQL helpers
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"}


def selectors(expr: str) -> list[str]:
    """Every vector selector (metric name with its matchers) in a PromQL expression."""
    found, i, n = [], 0, len(expr)

    def skip_to(close: str, j: int) -> int:  # j at the opening char; returns the index after close
        quote = None
        while j < n:
            c = expr[j]
            if quote:
                if c == "\\":
                    j += 1
                elif c == quote:
                    quote = None
            elif c in "\"'":
                quote = c
            elif c == close:
                return j + 1
            j += 1
        raise ValueError(f"unbalanced {close!r} in {expr!r}")

    while i < n:
        c = expr[i]
        if c in "\"'":
            i = skip_to(c, i + 1)
        elif c == "[":
            i = skip_to("]", i)
        elif c.isdigit() or (c == "." and i + 1 < n and expr[i + 1].isdigit()):
            m = re.match(r"[0-9.]+(e[+-]?[0-9]+)?", expr[i:])
            i += len(m.group(0))
        elif c.isalpha() or c in "_:":
            m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", expr[i:])
            ident, j = m.group(0), i + len(m.group(0))
            k = j
            while k < n and expr[k] == " ":
                k += 1
            if ident in KEYWORDS:
                i = skip_to(")", k) if ident in LABEL_LISTS and k < n and expr[k] == "(" else j
            elif ident in AGGREGATIONS or (k < n and expr[k] == "("):
                i = j  # a function call or an aggregation (its by/without list is skipped as a keyword)
            elif j < n and expr[j] == "{":
                end = skip_to("}", j)
                found.append(expr[i:end])
                i = end
            else:
                found.append(ident)
                i = j
        else:
            i += 1
    return found


def substitute(expr: str, variables: dict[str, str]) -> str:
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in variables:
            raise KeyError(f"dashboard variable ${name} is not defined")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def without_threshold(expr: str) -> str | None:
    m = re.match(r"^(.*?)\s*(>=|<=|==|!=|>|<)\s*-?[0-9.]+$", expr.strip(), re.S)
    return m.group(1) if m else None


def test_selector_extraction():
    expr = 'sum by (Hostname, gpu) (rate(DCGM_FI_DEV_X{Hostname=~"a|b", x="}"}[5m])) / on (UUID) group_left max by (UUID) (up) > 1e6 and vector(0)'
    assert selectors(expr) == ['DCGM_FI_DEV_X{Hostname=~"a|b", x="}"}', "up"]
    assert substitute('x{a=~"$Hostname", b="${gpu}"}[$__rate_interval]', VARIABLES) == 'x{a=~"xs-node-1", b="0|1|2|3"}[10s]'
    assert without_threshold("increase(x[10m]) > 0") == "increase(x[10m])"


# ---------------------------------------------------------------------- the files
def test_alert_rules_pass_promtool_check(tmp_path):
    rules = tmp_path / "xsharp-alerts.yml"
    rules.write_text(package_file("xsharp-alerts.yml"))
    r = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(all_rules())} rules found" in r.stdout


def all_rules() -> list[dict]:
    return [rule for group in alert_rules()["groups"] for rule in group["rules"]]


def gpu(i: int, **extra) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in gpu_labels(i, **extra).items()) + "}"


def gpu_labels(i: int, **extra) -> dict:
    return {
        "gpu": str(i),
        "UUID": f"GPU-{i}",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "n1",
        "pci_bus_id": f"00000000:1{i}:00.0",
        "instance": "n1:9400",
        "job": "xsharp-exporter",
        **extra,
    }


def render(template: str, labels: dict, value: str | None) -> str:
    """Prometheus's template for the two forms our annotations use; a missing label fails the test."""

    def one(m: re.Match) -> str:
        if m.group(1) == "$value":
            assert value is not None, f"{template!r} shows $value: give the case a value"
            return value
        return labels[m.group(1)[len("$labels.") :]]

    return re.sub(r"\{\{ (\$value|\$labels\.\w+) \}\}", one, template)


def alert_unit_tests(rules_file: Path) -> dict:
    """For each alert: a case where it fires (exact labels and annotations) and one where it must not."""
    warning, critical = {"severity": "warning"}, {"severity": "critical"}
    annotations = {rule["alert"]: rule["annotations"] for rule in all_rules()}

    def expected(alert: str, labels: dict) -> dict:
        labels = dict(labels)
        value = labels.pop("$value", None)
        return {"exp_labels": labels, "exp_annotations": {k: render(v, labels, value) for k, v in annotations[alert].items()}}

    def case(series: dict[str, str], checks: list[tuple[str, str, list[dict]]]) -> dict:
        return {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": [{"eval_time": t, "alertname": a, "exp_alerts": [expected(a, labels) for labels in exp]} for t, a, exp in checks],
        }

    tests = [
        case(
            {f"DCGM_FI_DEV_GPU_TEMP{gpu(0)}": "80 90x10", f"DCGM_FI_DEV_GPU_TEMP{gpu(1)}": "70x10"},
            [
                ("3m", "XsharpGPUTemperatureHigh", []),  # pending: for 5m
                ("7m", "XsharpGPUTemperatureHigh", [{**gpu_labels(0), **warning, "$value": "90"}]),
            ],
        ),
        case(
            {f"DCGM_FI_DEV_MEMORY_TEMP{gpu(0)}": "90x10", f"DCGM_FI_DEV_MEMORY_TEMP{gpu(1)}": "99x10"},
            [
                ("2m", "XsharpGPUMemoryTemperatureHigh", []),
                ("6m", "XsharpGPUMemoryTemperatureHigh", [{**gpu_labels(1), **warning, "$value": "99"}]),
            ],
        ),
        case(
            {f"xsharp_gpu_xid_errors_total{gpu(0)}": "0 0 1 1 1x20", f"xsharp_gpu_xid_errors_total{gpu(1)}": "0x24"},
            [
                ("1m", "XsharpGPUXidErrors", []),
                ("3m", "XsharpGPUXidErrors", [{**gpu_labels(0), **critical}]),
                ("20m", "XsharpGPUXidErrors", []),  # an old XID stops alerting
            ],
        ),
        case(
            {f"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{gpu(0)}": "0 0 2 2", f"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{gpu(1)}": "5 5 5 5"},
            [
                ("1m", "XsharpGPUEccUncorrectableErrors", []),
                ("3m", "XsharpGPUEccUncorrectableErrors", [{**gpu_labels(0), **critical}]),
            ],
        ),
        case(
            {
                f"DCGM_FI_DEV_ROW_REMAP_PENDING{gpu(0)}": "0 1x5",
                f"DCGM_FI_DEV_ROW_REMAP_FAILURE{gpu(0)}": "0 1x5",  # both: one alert
                f"DCGM_FI_DEV_ROW_REMAP_PENDING{gpu(1)}": "0x6",
                f"DCGM_FI_DEV_ROW_REMAP_FAILURE{gpu(1)}": "0 0 1x4",
                f"DCGM_FI_DEV_ROW_REMAP_PENDING{gpu(2)}": "0x6",
                f"DCGM_FI_DEV_ROW_REMAP_FAILURE{gpu(2)}": "0x6",
            },
            [
                ("0m", "XsharpGPURowRemapping", []),
                ("3m", "XsharpGPURowRemapping", [{**gpu_labels(0), **warning}, {**gpu_labels(1), **warning}]),
            ],
        ),
        case(
            {
                'xsharp_node_health_check{Hostname="n1", check="disk_free", instance="n1:9400", job="xsharp-exporter"}': "1 0x5",
                'xsharp_node_health_check{Hostname="n1", check="driver", instance="n1:9400", job="xsharp-exporter"}': "1x5",
            },
            [
                ("2m", "XsharpNodeUnhealthy", []),  # pending: for 2m
                ("4m", "XsharpNodeUnhealthy", [{"Hostname": "n1", "check": "disk_free", "instance": "n1:9400", "job": "xsharp-exporter", **critical}]),
            ],
        ),
        case(
            {
                'up{instance="n1:9400", job="xsharp-exporter"}': "1 0x5",
                'up{instance="n2:9400", job="xsharp-exporter"}': "1x5",
                'up{instance="head:8080", job="ray"}': "0x5",
            },
            [
                ("1m", "XsharpExporterDown", []),
                ("4m", "XsharpExporterDown", [{"instance": "n1:9400", "job": "xsharp-exporter", **critical}]),  # not Ray's target
            ],
        ),
        case(
            {
                'xsharp_exporter_errors_total{Hostname="n1", component="nvml", gpu="3", field="nvmlDeviceGetPowerUsage", instance="n1:9400", job="xsharp-exporter"}': "0+1x40",
                'xsharp_exporter_errors_total{Hostname="n1", component="nvml", gpu="2", field="nvmlDeviceGetPowerUsage", instance="n1:9400", job="xsharp-exporter"}': "7x40",
            },
            [
                ("10m", "XsharpExporterReadErrors", []),
                (
                    "30m",
                    "XsharpExporterReadErrors",
                    [{"Hostname": "n1", "component": "nvml", "gpu": "3", "field": "nvmlDeviceGetPowerUsage", "instance": "n1:9400", **warning}],
                ),
            ],
        ),
        case(
            {
                'xsharp_job_failures{job_id="7", user="alice", instance="n1:9400", job="xsharp-exporter"}': "1 2 3x3",
                'xsharp_job_failures{job_id="7", user="alice", instance="n2:9400", job="xsharp-exporter"}': "1 2 3x3",  # two nodes, one alert
                'xsharp_job_failures{job_id="8", user="bob", instance="n1:9400", job="xsharp-exporter"}': "2x5",
            },
            [
                ("1m", "XsharpJobFailingRepeatedly", []),
                ("3m", "XsharpJobFailingRepeatedly", [{"job_id": "7", "user": "alice", **warning, "$value": "3"}]),
            ],
        ),
        case(
            {'xsharp_jobs{state="QUEUED"}': "2x40", 'xsharp_jobs{state="RUNNING"}': "0x40", "xsharp_queue_oldest_wait_seconds": "60+60x40"},
            [
                ("10m", "XsharpQueueNotMoving", []),  # pending: for 15m
                ("20m", "XsharpQueueNotMoving", [warning]),  # jobs wait, nothing runs
            ],
        ),
        case(
            {'xsharp_jobs{state="QUEUED"}': "2x40", 'xsharp_jobs{state="RUNNING"}': "3x40", "xsharp_queue_oldest_wait_seconds": "7000+60x40"},
            [
                ("10m", "XsharpQueueNotMoving", []),
                ("25m", "XsharpQueueNotMoving", [warning]),  # a job has waited over 2 hours
            ],
        ),
        case(
            {'xsharp_jobs{state="QUEUED"}': "2x40", 'xsharp_jobs{state="RUNNING"}': "3x40", "xsharp_queue_oldest_wait_seconds": "100x40"},
            [
                ("30m", "XsharpQueueNotMoving", []),  # a busy cluster with a moving queue
            ],
        ),
    ]
    return {"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": tests}


def test_every_alert_has_a_passing_promtool_unit_test(tmp_path):
    rules = tmp_path / "xsharp-alerts.yml"
    rules.write_text(package_file("xsharp-alerts.yml"))
    doc = alert_unit_tests(rules)
    tested = {check["alertname"] for t in doc["tests"] for check in t["alert_rule_test"] if check["exp_alerts"]}
    assert tested == {rule["alert"] for rule in all_rules()}, "every alert needs a case where it fires"
    spec = tmp_path / "xsharp-alerts.test.yml"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = subprocess.run([PROMTOOL, "test", "rules", str(spec)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_dashboards_are_well_formed_and_cover_12239():
    boards = dashboards()
    assert len({b["uid"] for b in boards.values()}) == 3
    for name, board in boards.items():
        defined = {v["name"] for v in board["templating"]["list"]} | set(GRAFANA_BUILTINS)
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for p in board["panels"]:
            if p["type"] == "row":
                continue
            assert p["targets"] and p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (name, p["title"])
            assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
            for t in p["targets"]:
                used = set(re.findall(r"\$\{?(\w+)", t["expr"]))
                assert used <= defined, (name, p["title"], used - defined)
    titles = {p["title"] for p in boards["xsharp-cluster-gpus.json"]["panels"]}
    assert PANELS_OF_12239 <= titles


def test_config_command_output_passes_promtool(tmp_path):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "# the appliance\n[head]\nhead ansible_host=10.0.0.1\n\n[workers]\ngpu[01:03]\ngpu09 xsharp_exporter_port=9500\n"
        "[workers:vars]\nansible_user=ops\n[cluster:children]\nhead\nworkers\n"
    )
    out = tmp_path / "monitoring"
    r = run_cli(
        "appliance",
        "config",
        "--out",
        str(out),
        "--target",
        "10.0.0.7",
        "--inventory",
        str(inventory),
        "--server",
        "head:8000",
        "--alertmanager",
        "head",
        "--scrape-interval",
        "10s",
        "-o",
        "json",
    )
    assert r.returncode == 0, r.stderr
    written = json.loads(r.stdout)
    assert sorted(Path(f).relative_to(out).as_posix() for f in written["files"]) == [
        "dashboards/xsharp-cluster-gpus.json",
        "dashboards/xsharp-jobs-queue.json",
        "dashboards/xsharp-training.json",
        "prometheus.yml",
        "provisioning/dashboards/xsharp.yml",
        "provisioning/datasources/xsharp.yml",
        "rules/xsharp-alerts.yml",
    ]
    check = subprocess.run([PROMTOOL, "check", "config", str(out / "prometheus.yml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 1 rule files found" in check.stdout and f"SUCCESS: {len(all_rules())} rules found" in check.stdout
    prom = yaml.safe_load((out / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["xsharp-exporter"]["static_configs"][0]["targets"] == ["10.0.0.7:9400", "10.0.0.1:9400", "gpu01:9400", "gpu02:9400", "gpu03:9400", "gpu09:9500"]
    assert jobs["ray"]["file_sd_configs"][0]["files"] == ["/tmp/ray/prom_metrics_service_discovery.json"]
    assert jobs["xsharp-server"]["static_configs"][0]["targets"] == ["head:8000"]
    assert prom["global"] == {"scrape_interval": "10s", "evaluation_interval": "10s"}
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["head:9093"]
    datasource = yaml.safe_load((out / "provisioning/datasources/xsharp.yml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://localhost:9090" and datasource["isDefault"]
    provider = yaml.safe_load((out / "provisioning/dashboards/xsharp.yml").read_text())["providers"][0]
    assert Path(provider["options"]["path"]) == (out / "dashboards").resolve()
    for f in (out / "dashboards").iterdir():
        assert json.loads(f.read_text())["uid"].startswith("xsharp-")
    again = run_cli("appliance", "config", "--out", str(out), "--target", "n1")  # regenerating overwrites
    assert again.returncode == 0 and "prometheus.yml" in again.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "node:99999"], "port must be 1-65535"),
        (["--target", "fe80::1"], "write an IPv6 address as [address]:port"),
        (["--inventory", "/no/such/inventory"], "inventory /no/such/inventory"),
        ([], "no exporter targets"),
        (["--target", "n1", "--scrape-interval", "5 seconds"], "expected a Prometheus duration"),
    ],
)
def test_config_command_bad_input_exits_2(tmp_path, args, message):
    r = run_cli("appliance", "config", "--out", str(tmp_path / "out"), *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "prometheus.yml").exists()


def test_inventories_yaml_and_host_patterns(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "head": {"hosts": {"head": {"ansible_host": "192.168.1.10"}}},
                        "workers": {"hosts": {"gpu[1:2]": None, "big": {"ansible_host": "fd00::5"}}, "vars": {"xsharp_exporter_port": 9410}},
                    }
                }
            },
            sort_keys=False,
        )
    )
    assert inventory_targets(inv) == ["192.168.1.10:9400", "gpu1:9410", "gpu2:9410", "[fd00::5]:9410"]
    assert expand_host_pattern("n[08:10]") == ["n08", "n09", "n10"]
    assert expand_host_pattern("r[a:c]n[0:4:2]") == ["ran0", "ran2", "ran4", "rbn0", "rbn2", "rbn4", "rcn0", "rcn2", "rcn4"]
    empty = tmp_path / "empty.ini"
    empty.write_text("[workers]\n")
    with pytest.raises(ConfigError, match="no hosts found"):
        inventory_targets(empty)


# ---------------------------------------------------------------------- a live Prometheus
class LiveJobs:
    """The test's JobView: job 1 runs a process on GPU 0 (via a child), job 2 is placed on GPU 2."""

    def __init__(self, uuid2: str):
        self.uuid2 = uuid2

    def running_jobs(self):
        return [
            {"job_id": 1, "user": "alice", "pids": [os.getpid()], "gpus": [], "samples_per_second": 2048.0, "loss": 0.42, "step": 300, "failures": 3},
            {"job_id": 2, "user": "bob", "pids": [], "gpus": [self.uuid2], "samples_per_second": 512.0, "loss": 1.1, "step": 20, "failures": 0},
        ]

    def jobs_by_state(self):
        return {"QUEUED": 2, "PREEMPTED": 1, "RUNNING": 2, "SUCCEEDED": 7, "FAILED": 1}

    def queue_wait_seconds(self):
        return [12.0, 400.0, 4000.0]


@dataclass
class Live:
    url: str
    nvml: FakeNVML
    client: httpx.Client

    def get(self, path: str, **params) -> dict:
        r = self.client.get(self.url + path, params=params)
        body = r.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list:
        return self.get("/api/v1/query", query=expr)["result"]


def wait_for(what: str, ok, timeout: float, log: Path | None = None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = ok()
            if last:
                return last
        except (httpx.HTTPError, AssertionError) as e:
            last = e
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}: {last}" + (f"\nprometheus log:\n{log.read_text()[-3000:]}" if log and log.exists() else ""))


@dataclass
class ApiServer:
    uvicorn: object
    thread: threading.Thread
    address: str

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(timeout=10)


def api_server(home: Path) -> ApiServer:
    """`create_app` on a real SQLite store, served by uvicorn on loopback; two jobs wait in its queue."""
    import uvicorn

    from xsharp.api import create_app
    from xsharp.cluster.store import Store

    store = Store(home)
    store.add_user("carol")
    for name in ("waiting-1", "waiting-2"):
        store.submit("carol", {"name": name}, 0, 1.0, 1.0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for("the xsharp server", lambda: server.started, 20)
    return ApiServer(server, thread, f"127.0.0.1:{port}")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prometheus")
    helper = subprocess.Popen(["sleep", "300"])  # a child of the job's process, running on GPU 0
    nvml = FakeNVML(
        [
            h100(pids=[helper.pid]),
            a100(temp=90),  # above the health limit and the alert threshold
            h100(),
            a100(failing={"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_UNKNOWN}),
        ]
    )
    collector = NodeCollector(nvml, hostname=HOST, job_view=LiveJobs(nvml.gpus[2].uuid), health=HealthConfig(expected_gpus=4, min_free_disk_percent=0.0))
    server, _ = serve(collector, "127.0.0.1", 0)
    api = api_server(tmp / "home")  # the real xsharp server: its /metrics serves the store's queue
    port = free_port()
    ray_sd = tmp / "ray_sd.json"  # as Ray's head writes it; here it points at Prometheus itself
    ray_sd.write_text(json.dumps([{"labels": {"ray_io_cluster": "test"}, "targets": [f"127.0.0.1:{port}"]}]))
    write_config(tmp / "cfg", ApplianceConfig(targets=[f"127.0.0.1:{server.server_port}"], server=api.address, ray_sd_file=str(ray_sd), scrape_interval="1s"))
    log = tmp / "prometheus.log"
    with open(log, "w") as logf:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp / 'cfg' / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
    client = httpx.Client(timeout=10)
    try:
        lv = Live(f"http://127.0.0.1:{port}", nvml, client)
        wait_for("Prometheus to be ready", lambda: proc.poll() is None and client.get(lv.url + "/-/ready").status_code == 200, 30, log)
        wait_for("3 scrapes of the exporter", lambda: lv.query('count_over_time(up{job="xsharp-exporter"}[1m]) >= 3'), 30, log)
        nvml.events.append((1, 79))  # an XID between scrapes
        wait_for("the XID in Prometheus", lambda: lv.query(f'xsharp_gpu_xid_errors_total{{gpu="1", Hostname="{HOST}"}} == 1'), 15, log)
        wait_for("2 more scrapes", lambda: lv.query('count_over_time(up{job="xsharp-exporter"}[1m]) >= 6'), 15, log)
        yield lv
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        server.shutdown()
        server.server_close()
        collector.close()
        api.stop()
        helper.kill()
        helper.wait()


def test_live_targets_are_up_including_ray_service_discovery(live):
    targets = live.get("/api/v1/targets", state="active")["activeTargets"]
    by_job = {t["labels"]["job"]: t for t in targets}
    assert set(by_job) == {"xsharp-exporter", "ray", "xsharp-server"}
    assert all(t["health"] == "up" for t in targets), [(t["scrapeUrl"], t["lastError"]) for t in targets]
    assert by_job["ray"]["labels"]["ray_io_cluster"] == "test"  # read from the file_sd file


def test_the_server_and_the_exporter_serve_the_queue_alike(live):
    """Both may serve xsharp_jobs and the queue histogram; dashboards dedupe them with max by (le | state)."""
    assert [r["value"][1] for r in live.query('xsharp_jobs{job="xsharp-server", state="QUEUED"}')] == ["2"]
    le = {}
    for r in live.query("xsharp_queue_wait_seconds_bucket"):
        le.setdefault(r["metric"]["job"], set()).add(r["metric"]["le"])
    assert set(le) == {"xsharp-exporter", "xsharp-server"}
    assert le["xsharp-exporter"] == le["xsharp-server"], "bucket bounds differ: histogram_quantile over both would mix them"


def has_data(result: list) -> bool:
    return any(not math.isnan(float(r["value"][1])) for r in result)


def test_every_dashboard_panel_query_returns_data(live):
    checked, problems = 0, []
    for name, board in dashboards().items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                where = f"{name} / {panel['title']} / {target['refId']}"
                try:
                    result = live.query(substitute(target["expr"], VARIABLES))
                except (AssertionError, KeyError) as e:
                    problems.append(f"{where}: {e}")
                    continue
                checked += 1
                if not has_data(result):
                    problems.append(f"{where}: no data for {target['expr']}")
    assert not problems, "\n".join(problems)
    assert checked >= 70


def test_every_dashboard_variable_query_returns_values(live):
    expect = {"Hostname": HOST, "gpu": "3", "job_id": "1"}
    for name, board in dashboards().items():
        for var in board["templating"]["list"]:
            if var["type"] != "query":
                continue
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
            assert m, (name, var["name"])
            selector, label = substitute(m.group(1), VARIABLES), m.group(2)
            values = live.get(f"/api/v1/label/{label}/values", **{"match[]": selector})
            assert expect[var["name"]] in values, (name, var["name"], values)


def test_every_alert_expression_evaluates_on_live_series(live):
    problems = []
    for rule in all_rules():
        expr = rule["expr"]
        try:
            live.query(expr)  # parses and evaluates (a condition may well be false now)
        except AssertionError as e:
            problems.append(f"{rule['alert']}: {e}")
            continue
        for sel in selectors(expr):
            if not live.query(sel):
                problems.append(f"{rule['alert']}: selector {sel} returns nothing from the live exporter")
        base = without_threshold(expr)
        if base is not None and not has_data(live.query(base)):
            problems.append(f"{rule['alert']}: {base} (the expression without its threshold) returns nothing")
    assert not problems, "\n".join(problems)


def test_rules_load_evaluate_cleanly_and_the_expected_alerts_fire(live):
    groups = live.get("/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == len(all_rules())
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]

    def active():
        return {
            (a["labels"]["alertname"], a["labels"].get("gpu") or a["labels"].get("check") or a["labels"].get("job_id") or "", a["state"])
            for a in live.get("/api/v1/alerts")["alerts"]
        }

    want = {
        ("XsharpGPUTemperatureHigh", "1", "pending"),  # GPU 1 at 90 C, for 5m
        ("XsharpNodeUnhealthy", "gpu_temperature", "pending"),  # the health check names the hot GPU's check
        ("XsharpGPUXidErrors", "1", "firing"),
        ("XsharpJobFailingRepeatedly", "1", "firing"),  # job 1 has failed 3 times
        ("XsharpExporterReadErrors", "3", "pending"),  # GPU 3's power reads fail
    }
    got = wait_for("the expected alerts", lambda: active() if want <= active() else None, 15)
    assert not {a for a in got if a[0] in ("XsharpExporterDown", "XsharpQueueNotMoving", "XsharpGPUEccUncorrectableErrors", "XsharpGPURowRemapping")}
