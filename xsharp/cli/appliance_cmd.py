"""`xsharp exporter` and `xsharp appliance`: GPU and cluster monitoring for the appliance."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import threading
from pathlib import Path

import typer
from rich.table import Table

from xsharp.appliance import HealthConfig, NodeCollector, serve
from xsharp.appliance.config import ApplianceConfig, ConfigError, targets_from, write_config
from xsharp.appliance.jobs import load_job_view

from .common import EXIT_FAILED, Output, err, fail, out

app = typer.Typer(help="Monitoring for the appliance: Prometheus config, alert rules, Grafana dashboards, node health.", no_args_is_help=True)


def _health_config(expected_gpus: int | None, max_gpu_temp: float, min_free_disk: float, disk: list[str]):
    for path in disk:
        if not os.path.isdir(path):
            raise fail(f"--disk {path}: not a directory")
    return HealthConfig(expected_gpus=expected_gpus, max_gpu_temp_c=max_gpu_temp, min_free_disk_percent=min_free_disk, disk_paths=tuple(disk))


EXPECTED_HELP = "GPUs this node must have (health check gpu_count); default: the NVIDIA GPUs on its PCI bus."
DISK_HELP = "A path whose filesystem must keep --min-free-disk percent free (repeatable)."


def exporter(
    port: int = typer.Option(9400, "--port", "-p", min=0, max=65535, help="Port to serve /metrics on (dcgm-exporter's 9400 by default)."),
    host: str = typer.Option("0.0.0.0", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    hostname: str | None = typer.Option(None, "--hostname", help="Value of the Hostname label; default: this machine's hostname."),
    expected_gpus: int | None = typer.Option(None, "--expected-gpus", min=0, help=EXPECTED_HELP),
    max_gpu_temp: float = typer.Option(85.0, "--max-gpu-temp", help="Health check gpu_temperature fails at or above this (Celsius)."),
    min_free_disk: float = typer.Option(10.0, "--min-free-disk", min=0, max=100, help="Health check disk_free fails below this percent free."),
    disk: list[str] = typer.Option(["/"], "--disk", help=DISK_HELP),
    jobs: str | None = typer.Option(
        None, "--jobs", envvar="XSHARP_EXPORTER_JOBS", help="module:callable returning a JobView (the job store) for job labels and queue metrics."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every NVML error as it happens."),
) -> None:
    """Serve this node's GPU, host, health and job metrics for Prometheus at http://HOST:PORT/metrics.

    GPU series carry dcgm-exporter's names and labels (DCGM_FI_DEV_GPU_UTIL{gpu, UUID, modelName, Hostname, pci_bus_id}), so existing DCGM dashboards work. Each scrape reads NVML, /proc and the job store; nothing polls in between. Without a GPU or driver it serves the rest with zero GPUs. Stops cleanly on Ctrl-C or SIGTERM. Exit code 2: bad option or the port is taken.

    Example: xsharp exporter --port 9400 --expected-gpus 8 --disk / --disk /data
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("xsharp").setLevel(logging.DEBUG if verbose else logging.INFO)
    health = _health_config(expected_gpus, max_gpu_temp, min_free_disk, disk)
    view = None
    if jobs:
        try:
            view = load_job_view(jobs)
        except ValueError as e:
            raise fail(str(e)) from None
    collector = NodeCollector(hostname=hostname, job_view=view, health=health)
    try:
        server, thread = serve(collector, host, port)
    except OSError as e:
        collector.close()
        if e.errno == errno.EADDRINUSE:
            raise fail(f"port {port} on {host} is already in use (another exporter, or dcgm-exporter?): pick one with --port") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise fail(f"not allowed to listen on {host}:{port}: {e.strerror}") from None
        if e.errno == errno.EADDRNOTAVAIL or isinstance(e, socket.gaierror):
            raise fail(f"--host {host}: not an address of this machine") from None
        raise fail(f"cannot listen on {host}:{port}: {e}", EXIT_FAILED) from None
    bound = server.server_port
    gpus = len(collector.gpus.gpus)
    err.print(
        f"exporter: serving http://{host}:{bound}/metrics for {collector.hostname} ({gpus} GPU{'s' if gpus != 1 else ''}{', jobs from ' + jobs if jobs else ''})"
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(3600):
        pass
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    collector.close()
    err.print("exporter: stopped")


@app.command()
def config(
    out_dir: Path = typer.Option(..., "--out", help="Folder to write prometheus.yml, rules/, dashboards/ and provisioning/ into."),
    target: list[str] = typer.Option([], "--target", "-t", help="A node's exporter as HOST or HOST:PORT (default port 9400); repeatable."),
    inventory: Path | None = typer.Option(None, "--inventory", "-i", help="Ansible inventory (INI or YAML): one exporter target per host."),
    server: str | None = typer.Option(None, "--server", help="The xsharp REST server as HOST:PORT, scraped at /metrics."),
    ray_sd: str = typer.Option(
        "/tmp/ray/prom_metrics_service_discovery.json", "--ray-sd", help="Ray's metrics service-discovery file (on the Prometheus host)."
    ),
    scrape_interval: str = typer.Option("15s", "--scrape-interval", help="How often Prometheus scrapes and evaluates rules."),
    alertmanager: list[str] = typer.Option([], "--alertmanager", help="Alertmanager as HOST:PORT (default port 9093); repeatable."),
    prometheus_url: str = typer.Option("http://localhost:9090", "--prometheus-url", help="Prometheus as Grafana reaches it (the provisioned data source)."),
    dashboards_path: str | None = typer.Option(
        None, "--dashboards-path", help="Where Grafana will find the dashboards (provisioning); default: OUT/dashboards, absolute."
    ),
    output: Output = typer.Option(Output.text, "--output", "-o", help="text: a table of files; json: the list of files."),
) -> None:
    """Write Prometheus config, alert rules, Grafana dashboards and Grafana provisioning for a cluster.

    Targets come from --target (repeatable) and/or --inventory. Ray's nodes are found through its service-discovery file; the xsharp server through --server. Check the result with `promtool check config OUT/prometheus.yml`. Exit code 2: a bad target, inventory or option.

    Example: xsharp appliance config --out /etc/xsharp/monitoring --inventory ansible/inventory.ini --server head:8000
    """
    try:
        targets = targets_from(target, inventory)
        cfg = ApplianceConfig(
            targets=targets,
            server=server,
            ray_sd_file=ray_sd,
            scrape_interval=scrape_interval,
            alertmanagers=list(alertmanager),
            prometheus_url=prometheus_url,
            dashboards_path=dashboards_path,
        )
        files = write_config(out_dir, cfg)
    except ConfigError as e:
        raise fail(str(e)) from None
    except OSError as e:
        raise fail(f"{e.filename or out_dir}: {e.strerror or e}") from None
    if output is Output.json:
        out.print_json(json.dumps({"files": [str(f) for f in files], "targets": targets}))
        return
    for f in files:
        out.print(str(f), markup=False)
    scraped = f"{len(targets)} exporter(s), Ray's service-discovery file" + (f", the xsharp server at {server}" if server else "")
    err.print(f"wrote {len(files)} files; Prometheus will scrape {scraped}", markup=False)
    err.print(f"check it with: promtool check config {out_dir / 'prometheus.yml'}", markup=False)


@app.command()
def health(
    expected_gpus: int | None = typer.Option(None, "--expected-gpus", min=0, help=EXPECTED_HELP),
    max_gpu_temp: float = typer.Option(85.0, "--max-gpu-temp", help="gpu_temperature fails at or above this (Celsius)."),
    min_free_disk: float = typer.Option(10.0, "--min-free-disk", min=0, max=100, help="disk_free fails below this percent free."),
    disk: list[str] = typer.Option(["/"], "--disk", help=DISK_HELP),
    output: Output = typer.Option(Output.text, "--output", "-o", help="text: a table; json: the checks as JSON."),
) -> None:
    """Run this node's health checks once (the exporter's xsharp_node_health_check) and exit 1 if any fails."""
    logging.basicConfig(level=logging.ERROR)
    collector = NodeCollector(health=_health_config(expected_gpus, max_gpu_temp, min_free_disk, disk))
    try:
        results = collector.check_health()
    finally:
        collector.close()
    healthy = all(r.ok for r in results)
    if output is Output.json:
        out.print_json(json.dumps({"hostname": collector.hostname, "healthy": healthy, "checks": [r.__dict__ for r in results]}))
    else:
        table = Table("check", "result", "detail", box=None)
        for r in results:
            table.add_row(r.check, "[green]ok[/]" if r.ok else "[bold red]FAIL[/]", r.detail)
        out.print(table)
    if not healthy:
        raise typer.Exit(EXIT_FAILED)
