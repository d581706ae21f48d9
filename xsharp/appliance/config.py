"""`xsharp appliance config`: the Prometheus and Grafana files for a cluster, in one folder.

    DIR/prometheus.yml                         scrape configs: every node's exporter, Ray, the xsharp server
    DIR/rules/xsharp-alerts.yml                alert rules (package data)
    DIR/dashboards/xsharp-*.json               Grafana dashboards (package data)
    DIR/provisioning/datasources/xsharp.yml    Grafana: the Prometheus data source
    DIR/provisioning/dashboards/xsharp.yml     Grafana: load the dashboards folder

prometheus.yml names the rules by a path relative to itself, so `promtool check config
DIR/prometheus.yml` checks the rules too, and the folder can be copied to /etc/prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from xsharp.files import write_atomic

from .exporter import DEFAULT_PORT

RAY_SD_FILE = "/tmp/ray/prom_metrics_service_discovery.json"  # written by Ray's head node
EXPORTER_JOB = "xsharp-exporter"  # the alert XsharpExporterDown and the dashboards use this job name
DASHBOARDS = ("xsharp-cluster-gpus.json", "xsharp-jobs-queue.json", "xsharp-training.json")
RULES = "xsharp-alerts.yml"
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


class ConfigError(ValueError):
    """A target, inventory or option the user gave is wrong; the message names it."""


@dataclass
class ApplianceConfig:
    targets: list[str] = field(default_factory=list)  # exporter host:port, one per node
    server: str | None = None  # the xsharp REST server, host:port (its /metrics)
    ray_sd_file: str = RAY_SD_FILE
    scrape_interval: str = "15s"
    evaluation_interval: str | None = None  # default: the scrape interval
    alertmanagers: list[str] = field(default_factory=list)
    prometheus_url: str = "http://localhost:9090"  # as Grafana reaches Prometheus
    dashboards_path: str | None = None  # where Grafana will read the dashboards; default DIR/dashboards


# ---------------------------------------------------------------------- targets and inventories
def parse_target(text: str, default_port: int = DEFAULT_PORT) -> str:
    """``host`` or ``host:port`` or ``[v6]:port`` -> ``host:port``; ConfigError naming a bad one."""
    t = text.strip()
    if not t or any(c.isspace() for c in t) or "/" in t:
        raise ConfigError(f"target {text!r}: expected host or host:port")
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or not host:
            raise ConfigError(f"target {text!r}: unclosed IPv6 bracket")
        if not rest:
            return f"[{host}]:{default_port}"
        if not rest.startswith(":"):
            raise ConfigError(f"target {text!r}: expected [address]:port")
        return f"[{host}]:{_port(text, rest[1:])}"
    if t.count(":") > 1:
        raise ConfigError(f"target {text!r}: write an IPv6 address as [address]:port")
    host, sep, port = t.partition(":")
    if not host:
        raise ConfigError(f"target {text!r}: no host")
    return f"{host}:{_port(text, port) if sep else default_port}"


def _port(text: str, port: str) -> int:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"target {text!r}: port must be 1-65535, got {port!r}")
    return int(port)


def inventory_targets(path: str | Path, default_port: int = DEFAULT_PORT) -> list[str]:
    """Exporter targets for every host of an Ansible inventory (YAML or INI).

    The address is the host's ``ansible_host`` when set, else its inventory name; the port its
    ``xsharp_exporter_port`` when set, else ``default_port``. Group ``vars``/``children`` are followed.
    """
    p = Path(path)
    try:
        content = p.read_text()
    except OSError as e:
        raise ConfigError(f"inventory {path}: {e.strerror or e}") from None
    hosts = _yaml_inventory(p, content) if p.suffix in (".yml", ".yaml") or content.lstrip().startswith(("all:", "---")) else _ini_inventory(p, content)
    if not hosts:
        raise ConfigError(f"inventory {path}: no hosts found")
    targets = []
    for name, hostvars in hosts.items():
        address = str(hostvars.get("ansible_host") or name)
        port = hostvars.get("xsharp_exporter_port", default_port)
        target = parse_target(f"[{address}]:{port}" if ":" in address else f"{address}:{port}", default_port)
        if target not in targets:
            targets.append(target)
    return targets


def _yaml_inventory(path: Path, content: str) -> dict[str, dict]:
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as e:
        raise ConfigError(f"inventory {path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"inventory {path}: expected a mapping of groups (all: hosts: ...)")
    hosts: dict[str, dict] = {}

    def group(g: object, inherited: dict) -> None:
        if not isinstance(g, dict):
            return
        gvars = {**inherited, **(g.get("vars") or {})}
        for name, hv in (g.get("hosts") or {}).items():
            for expanded in expand_host_pattern(str(name)):
                hosts.setdefault(expanded, {}).update({**gvars, **(hv or {})})
        for child in (g.get("children") or {}).values():
            group(child, gvars)

    for g in data.values():
        group(g, {})
    return hosts


def _ini_inventory(path: Path, content: str) -> dict[str, dict]:
    hosts: dict[str, dict] = {}
    group_vars: dict[str, dict] = {}
    members: dict[str, list[str]] = {}
    section, kind = "ungrouped", "hosts"
    for lineno, raw in enumerate(content.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        line = line.split(" #", 1)[0].strip()
        if line.startswith("["):
            if not line.endswith("]"):
                raise ConfigError(f"inventory {path}:{lineno}: unclosed section {line!r}")
            name = line[1:-1]
            section, _, kind = name.partition(":")
            kind = kind or "hosts"
            continue
        if kind == "vars":
            key, _, value = line.partition("=")
            group_vars.setdefault(section, {})[key.strip()] = value.strip()
            continue
        if kind == "children":
            continue
        name, *pairs = line.split()
        hv = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ConfigError(f"inventory {path}:{lineno}: expected key=value, got {pair!r}")
            hv[key] = value.strip("'\"")
        for expanded in expand_host_pattern(name):
            hosts.setdefault(expanded, {}).update(hv)
            members.setdefault(section, []).append(expanded)
    for section, names in members.items():  # host vars win over group vars
        for name in names:
            hosts[name] = {**group_vars.get(section, {}), **hosts[name]}
    return hosts


def expand_host_pattern(pattern: str) -> list[str]:
    """Ansible's ranges: ``gpu[01:04]`` -> gpu01..gpu04, ``node[a:c]``, ``n[0:10:5]``."""
    m = re.search(r"\[([0-9a-z]+):([0-9a-z]+)(?::([0-9]+))?\]", pattern)
    if not m:
        return [pattern]
    start, end, step = m.group(1), m.group(2), int(m.group(3) or 1)
    head, tail = pattern[: m.start()], pattern[m.end() :]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") else 0
        items = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    elif len(start) == len(end) == 1 and start.isalpha() and end.isalpha():
        items = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    else:
        raise ConfigError(f"host pattern {pattern!r}: ranges are [01:10] or [a:f]")
    return [name for item in items for name in expand_host_pattern(head + item + tail)]


# ---------------------------------------------------------------------- the files
def prometheus_config(cfg: ApplianceConfig) -> dict:
    for name, value in (("scrape interval", cfg.scrape_interval), ("evaluation interval", cfg.evaluation_interval or cfg.scrape_interval)):
        if not _DURATION.match(value):
            raise ConfigError(f"{name} {value!r}: expected a Prometheus duration such as 15s or 1m")
    scrape = [
        {
            "job_name": EXPORTER_JOB,
            "static_configs": [{"targets": [parse_target(t) for t in cfg.targets]}],
        },
        {
            # Ray's head node writes its nodes' metrics endpoints here (ray metrics docs, file_sd)
            "job_name": "ray",
            "file_sd_configs": [{"files": [cfg.ray_sd_file]}],
        },
    ]
    if cfg.server:
        scrape.append({"job_name": "xsharp-server", "metrics_path": "/metrics", "static_configs": [{"targets": [parse_target(cfg.server, 8000)]}]})
    config: dict = {
        "global": {"scrape_interval": cfg.scrape_interval, "evaluation_interval": cfg.evaluation_interval or cfg.scrape_interval},
        "rule_files": [f"rules/{RULES}"],
        "scrape_configs": scrape,
    }
    if cfg.alertmanagers:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [parse_target(a, 9093) for a in cfg.alertmanagers]}]}]}
    return config


def datasource_provisioning(cfg: ApplianceConfig) -> dict:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "xsharp-prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": cfg.prometheus_url,
                "isDefault": True,
                "jsonData": {"timeInterval": cfg.scrape_interval},
            }
        ],
    }


def dashboard_provisioning(dashboards_path: str) -> dict:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "xsharp",
                "folder": "xsharp",
                "type": "file",
                "disableDeletion": False,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": dashboards_path},
            }
        ],
    }


def package_file(name: str) -> str:
    return resources.files("xsharp.appliance").joinpath("data", name).read_text()


def alert_rules() -> dict:
    return yaml.safe_load(package_file(RULES))


def dashboards() -> dict[str, dict]:
    return {name: json.loads(package_file(f"dashboards/{name}")) for name in DASHBOARDS}


def write_config(out: str | Path, cfg: ApplianceConfig) -> list[Path]:
    """Write every file under ``out`` (created if needed; our files are overwritten). Returns the paths."""
    if not cfg.targets:
        raise ConfigError("no exporter targets: give --target HOST[:PORT] (repeatable) or --inventory FILE")
    out = Path(out)
    prom = prometheus_config(cfg)  # validate before writing anything
    dash_dir = out / "dashboards"
    dashboards_path = cfg.dashboards_path or str(dash_dir.resolve())
    files: dict[Path, str] = {
        out / "prometheus.yml": "# Written by `xsharp appliance config`.\n" + yaml.safe_dump(prom, sort_keys=False),
        out / "rules" / RULES: package_file(RULES),
        out / "provisioning" / "datasources" / "xsharp.yml": yaml.safe_dump(datasource_provisioning(cfg), sort_keys=False),
        out / "provisioning" / "dashboards" / "xsharp.yml": yaml.safe_dump(dashboard_provisioning(dashboards_path), sort_keys=False),
    }
    for name in DASHBOARDS:
        files[dash_dir / name] = package_file(f"dashboards/{name}")
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, content)  # a Prometheus watching the folder never reads half a file
    return list(files)


def targets_from(targets: Iterable[str], inventory: str | Path | None, default_port: int = DEFAULT_PORT) -> list[str]:
    out: list[str] = []
    for t in targets:
        parsed = parse_target(t, default_port)
        if parsed not in out:
            out.append(parsed)
    if inventory is not None:
        for t in inventory_targets(inventory, default_port):
            if t not in out:
                out.append(t)
    return out
