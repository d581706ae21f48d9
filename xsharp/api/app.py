"""The FastAPI app factory: routers, auth and the store as dependencies, limits, error format."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from xsharp import __version__
from xsharp.cluster.policy import Policy
from xsharp.cluster.store import Store
from xsharp.spec import format_error_list

from . import cluster, jobs, searches, system, ui

MAX_BODY = 1024 * 1024  # a job spec is a few kB; nothing legitimate comes near this


class BodyLimit:
    """413 for a request body over ``limit`` bytes, declared or streamed."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send):
        await JSONResponse({"detail": f"request body over {self.limit} bytes"}, status_code=413)({"type": "http"}, None, send)


class _TooLarge(Exception):
    pass


def create_app(
    store: Store, scheduler=None, max_body: int = MAX_BODY, *, exporter_urls: list[str] = (), grafana_url: str | None = None, recipes_dir=None,
    policy: Policy | None = None,
) -> FastAPI:
    app = FastAPI(
        title="xsharp",
        version=__version__,
        description="Submit and manage training jobs on an xsharp cluster. Every call but /healthz and /metrics needs a bearer token.",
    )
    app.state.store = store
    app.state.scheduler = scheduler
    app.state.policy = policy or Policy(denied=(store.root,))  # what a job may read and how big it may be
    app.include_router(jobs.router)
    app.include_router(searches.router)
    app.include_router(cluster.router)
    app.include_router(system.router)
    app.include_router(ui.router)  # the console's read-only extras: /v1/me, /v1/modules, /v1/recipes, ...
    app.include_router(ui.pages)
    app.mount("/ui/static", StaticFiles(directory=ui.STATIC), name="ui-static")
    ui.configure(app, exporter_urls, grafana_url, recipes_dir)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = []
        for err in exc.errors():
            err = dict(err)
            loc = tuple(err.get("loc", ()))
            err["loc"] = loc[1:] if loc[:1] == ("body",) else loc
            errors.append(err)
        return JSONResponse({"detail": format_error_list(errors)}, status_code=422)

    app.add_middleware(BodyLimit, limit=max_body)
    return app
