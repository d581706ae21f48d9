"""The web console at /ui, and the read-only endpoints it needs beyond the job API.

The pages are one HTML shell (templates/console.html) and one script (static/console.js) that
calls the same REST API as the CLI with the token the user pastes at login, kept in the tab's
sessionStorage. Nothing on a page is rendered from private data on the server, so the pages
themselves need no token; every /v1 endpoint here does.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel

from xsharp.cluster.store import User

from .auth import current_user

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
EXAMPLES = HERE.parents[1] / "examples"  # the repository's examples/, present in a source checkout
DASHBOARDS = HERE.parent / "appliance" / "data" / "dashboards"
EXPORTER_TIMEOUT = 3.0

pages = APIRouter(include_in_schema=False)
router = APIRouter(prefix="/v1", tags=["console"])


# --------------------------------------------------------------------------- pages
@lru_cache(maxsize=1)
def _shell() -> Template:
    return Template((TEMPLATES / "console.html").read_text())


def _page(page: str, job_id: int | None = None) -> HTMLResponse:
    html = _shell().substitute(page=page, job_id="" if job_id is None else str(job_id))
    # The token lives in sessionStorage; a strict CSP keeps other scripts from reading it.
    csp = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    return HTMLResponse(html, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"})


@pages.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/jobs")


@pages.get("/ui")
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/jobs")


@pages.get("/ui/login")
def login_page() -> HTMLResponse:
    return _page("login")


@pages.get("/ui/jobs")
def jobs_page() -> HTMLResponse:
    return _page("jobs")


@pages.get("/ui/jobs/{job_id}")
def job_page(job_id: int) -> HTMLResponse:
    return _page("job", job_id)


@pages.get("/ui/submit")
def submit_page() -> HTMLResponse:
    return _page("submit")


@pages.get("/ui/searches")
def searches_page() -> HTMLResponse:
    return _page("searches")


@pages.get("/ui/searches/{job_id}")
def search_page(job_id: int) -> HTMLResponse:
    return _page("searches", job_id)


@pages.get("/ui/datasets")
def datasets_page() -> HTMLResponse:
    return _page("datasets")


@pages.get("/ui/models")
def models_page() -> HTMLResponse:
    return _page("models")


@pages.get("/ui/models/{model_id}")
def model_page(model_id: int) -> HTMLResponse:
    return _page("model", model_id)  # the id rides in data-job, as a job's and a search's do


@pages.get("/ui/cluster")
def cluster_page() -> HTMLResponse:
    return _page("cluster")


# --------------------------------------------------------------------------- who, what, how
class Me(BaseModel):
    name: str
    admin: bool


class ModuleInfo(BaseModel):
    kind: str
    summary: str
    pretrainable: bool
    solved: bool = False  # trained by a closed-form solve: one pass, always run (elm, elm_ae)
    options: dict[str, Any]  # the module's Options as JSON Schema


class Recipe(BaseModel):
    name: str
    kind: str  # job: a JobSpec (POST /v1/jobs); search: a hyper-parameter search (POST /v1/searches)
    description: str
    yaml: str
    spec: dict[str, Any] | None = None  # a job: the validated spec, defaults filled in; a search: as written
    error: str | None = None


class AutoPrior(BaseModel):
    low: float
    high: float
    log: bool
    integer: bool


class SpecSchema(BaseModel):
    jobspec: dict[str, Any]
    datasets: list[str]
    formats: list[str]
    search: dict[str, Any]  # the search: section as JSON Schema
    auto: dict[str, AutoPrior]  # option name -> the prior `auto` draws from (other options cannot be auto)


@router.get("/me", response_model=Me, summary="The user the token belongs to")
def me(user: User = Depends(current_user)) -> Me:
    return Me(name=user.name, admin=user.admin)


@lru_cache(maxsize=1)
def _modules() -> list[ModuleInfo]:
    from xsharp.algos.modules import MODULES

    return [
        ModuleInfo(
            kind=kind, summary=cls.summary, pretrainable=hasattr(cls, "pretrain_step"), solved=hasattr(cls, "solve"), options=cls.Options.model_json_schema()
        )
        for kind, cls in MODULES.items()
    ]


@router.get("/modules", response_model=list[ModuleInfo], summary="The module library, with each module's options as JSON Schema")
def modules(user: User = Depends(current_user)) -> list[ModuleInfo]:
    return _modules()


@lru_cache(maxsize=1)
def _schema() -> SpecSchema:
    from xsharp.algos import datasets
    from xsharp.cluster.search import AUTO_PRIORS, SearchSettings
    from xsharp.spec import json_schema

    auto = {name: AutoPrior(low=lo, high=hi, log=log, integer=integer) for name, (lo, hi, log, integer) in AUTO_PRIORS.items()}
    return SpecSchema(
        jobspec=json_schema(), datasets=sorted(datasets.NAMED), formats=sorted(datasets.FORMATS), search=SearchSettings.model_json_schema(), auto=auto
    )


@router.get("/spec/schema", response_model=SpecSchema, summary="The JobSpec and a search's settings as JSON Schema, the named datasets and file formats, the priors of `auto`")
def spec_schema(user: User = Depends(current_user)) -> SpecSchema:
    return _schema()


def _leading_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


@router.get("/recipes", response_model=list[Recipe], summary="Example job specs to start from (read-only)")
def recipes(request: Request, user: User = Depends(current_user)) -> list[Recipe]:
    """The server's example specs (examples/*.yaml), each as text and as a spec."""
    from xsharp.cluster.search import is_search
    from xsharp.spec import SpecError, load_spec

    folder: Path | None = request.app.state.recipes_dir
    out = []
    for path in sorted(folder.glob("*.yaml")) if folder and folder.is_dir() else []:
        text = path.read_text()
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            out.append(Recipe(name=path.stem, kind="job", description=_leading_comment(text), yaml=text, error=f"not valid YAML: {e}"))
            continue
        try:
            search = is_search(raw)
        except SpecError:  # e.g. `device: auto` read as a search prior; the job check below says what is wrong, if anything
            search = isinstance(raw, dict) and "search" in raw
        if search:
            out.append(Recipe(name=path.stem, kind="search", description=_leading_comment(text), yaml=text, spec=raw))
            continue
        try:
            spec, error = load_spec(path).to_dict(), None
        except SpecError as e:
            spec, error = None, "; ".join(e.problems)
        out.append(Recipe(name=path.stem, kind="job", description=_leading_comment(text), yaml=text, spec=spec, error=error))
    return out


# --------------------------------------------------------------------------- GPUs and dashboards
class GPU(BaseModel):
    hostname: str
    gpu: str
    uuid: str
    model: str
    utilization: float | None = None  # percent
    memory_used: float | None = None  # MiB
    memory_total: float | None = None  # MiB
    temperature: float | None = None  # C
    power: float | None = None  # W
    jobs: list[str] = []


class GPUsOut(BaseModel):
    exporters: int
    gpus: list[GPU]
    errors: list[str]


class Dashboard(BaseModel):
    uid: str
    title: str
    url: str


_GPU_FIELDS = {
    "DCGM_FI_DEV_GPU_UTIL": "utilization",
    "DCGM_FI_DEV_FB_USED": "memory_used",
    "DCGM_FI_DEV_FB_TOTAL": "memory_total",
    "DCGM_FI_DEV_GPU_TEMP": "temperature",
    "DCGM_FI_DEV_POWER_USAGE": "power",
}


def metrics_url(url: str) -> str:
    """An exporter given as host:port or a base URL is read at /metrics."""
    if "://" not in url:
        url = "http://" + url
    return url if urlsplit(url).path not in ("", "/") else url.rstrip("/") + "/metrics"


def parse_gpus(text: str) -> list[GPU]:
    """GPUs from an exporter's /metrics text (DCGM names and labels, as xsharp's exporter and dcgm-exporter write them)."""
    from prometheus_client.parser import text_string_to_metric_families

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


def check_url(url: str) -> bool:
    """A URL with a host, or HOST[:PORT]."""
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def configure(app, exporter_urls=(), grafana_url: str | None = None, recipes_dir: str | Path | None = None) -> None:
    """Console settings on the app: exporters to read GPUs from, Grafana's address, the recipes folder."""
    for url in [*exporter_urls, *([grafana_url] if grafana_url else [])]:
        if not check_url(url):
            raise ValueError(f"not a URL or HOST:PORT: {url!r}")
    app.state.exporter_urls = list(exporter_urls)
    app.state.grafana_url = grafana_url
    app.state.recipes_dir = Path(recipes_dir) if recipes_dir else (EXAMPLES if EXAMPLES.is_dir() else None)


