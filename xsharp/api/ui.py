"""The web console's pages at /ui and its static files.

The pages are one HTML shell (templates/console.html) and one script (static/console.js) that
calls the same REST API as the CLI with the token the user pastes at login, kept in the tab's
sessionStorage. Nothing on a page is rendered from private data on the server, so the pages
themselves need no token; every /v1 endpoint they call does (the console's own reads: console.py,
monitoring.py).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from string import Template

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

pages = APIRouter(include_in_schema=False)


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
