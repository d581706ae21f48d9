"""/v1/cluster/gpus and /v1/cluster/dashboards: the GPUs the node exporters report, read on each
call, and links to xsharp's Grafana dashboards."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from prometheus_client.parser import text_string_to_metric_families

from xsharp.cluster.store import User

from .auth import current_user
from .schemas import GPU, Dashboard, GPUsOut

DASHBOARDS = Path(__file__).resolve().parents[1] / "appliance" / "data" / "dashboards"
EXPORTER_TIMEOUT = 3.0

router = APIRouter(prefix="/v1", tags=["console"])

_GPU_FIELDS = {
    "DCGM_FI_DEV_GPU_UTIL": "utilization",
    "DCGM_FI_DEV_FB_USED": "memory_used",
    "DCGM_FI_DEV_FB_TOTAL": "memory_total",
    "DCGM_FI_DEV_GPU_TEMP": "temperature",
    "DCGM_FI_DEV_POWER_USAGE": "power",
}


def check_url(url: str) -> bool:
    """A URL with a host, or HOST[:PORT]."""
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def configure(app: FastAPI, exporter_urls=(), grafana_url: str | None = None) -> None:
    """The exporters to read GPUs from and Grafana's address, on the app; ValueError for one that is not a URL."""
    for url in [*exporter_urls, *([grafana_url] if grafana_url else [])]:
        if not check_url(url):
            raise ValueError(f"not a URL or HOST:PORT: {url!r}")
    app.state.exporter_urls = list(exporter_urls)
    app.state.grafana_url = grafana_url


def metrics_url(url: str) -> str:
    """An exporter given as host:port or a base URL is read at /metrics."""
    if "://" not in url:
        url = "http://" + url
    return url if urlsplit(url).path not in ("", "/") else url.rstrip("/") + "/metrics"


def parse_gpus(text: str) -> list[GPU]:
    """GPUs from an exporter's /metrics text (DCGM names and labels, as xsharp's exporter and dcgm-exporter write them)."""
    gpus: dict[tuple[str, str], GPU] = {}
    jobs: dict[tuple[str, str], list[str]] = {}
    free_mib: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            lab = s.labels
            key = (lab.get("Hostname", ""), lab.get("gpu", ""))
            if s.name in _GPU_FIELDS and "gpu" in lab:
                gpu = gpus.setdefault(key, GPU(hostname=key[0], gpu=key[1], uuid=lab.get("UUID", ""), model=lab.get("modelName", "")))
                setattr(gpu, _GPU_FIELDS[s.name], s.value)
            elif s.name == "DCGM_FI_DEV_FB_FREE" and "gpu" in lab:
                free_mib[key] = s.value
            elif s.name == "xsharp_gpu_job_info" and s.value:
                jobs.setdefault(key, []).append(f"{lab.get('job_id')} ({lab.get('user')})")
    for key, gpu in gpus.items():
        gpu.jobs = jobs.get(key, [])
        free = free_mib.get(key)
        if gpu.memory_total is None and gpu.memory_used is not None and free is not None:
            gpu.memory_total = gpu.memory_used + free  # dcgm-exporter's default set has no FB_TOTAL
    return sorted(gpus.values(), key=lambda g: (g.hostname, int(g.gpu) if g.gpu.isdigit() else 0, g.gpu))


def _scrape(url: str) -> tuple[list[GPU], str | None]:
    try:
        r = httpx.get(metrics_url(url), timeout=EXPORTER_TIMEOUT)
        r.raise_for_status()
        return parse_gpus(r.text), None
    except (httpx.HTTPError, ValueError) as e:
        return [], f"{url}: {e.__class__.__name__}: {e}"


@router.get("/cluster/gpus", response_model=GPUsOut, summary="GPU utilisation, memory and temperature from the node exporters")
def cluster_gpus(request: Request, user: User = Depends(current_user)) -> GPUsOut:
    """Read on each call from the exporters given with `xsharp server --exporter-url` (none: an empty list)."""
    urls: list[str] = request.app.state.exporter_urls
    gpus, errors = [], []
    if urls:
        with ThreadPoolExecutor(max_workers=min(len(urls), 16)) as pool:
            for found, error in pool.map(_scrape, urls):
                gpus += found
                if error:
                    errors.append(error)
    return GPUsOut(exporters=len(urls), gpus=gpus, errors=errors)


@lru_cache(maxsize=1)
def _dashboards() -> list[tuple[str, str]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        d = json.loads(path.read_text())
        out.append((d["uid"], d["title"]))
    return out


@router.get("/cluster/dashboards", response_model=list[Dashboard], summary="Links to xsharp's Grafana dashboards (when `--grafana-url` is set)")
def cluster_dashboards(request: Request, user: User = Depends(current_user)) -> list[Dashboard]:
    base: str | None = request.app.state.grafana_url
    if not base:
        return []
    return [Dashboard(uid=uid, title=title, url=f"{base.rstrip('/')}/d/{uid}") for uid, title in _dashboards()]
