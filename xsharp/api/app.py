"""The FastAPI app factory: routers, auth and the store as dependencies, limits, error format.

Every 4xx the API gives has one body, :class:`ErrorOut`: ``{"detail": [one line per problem]}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from xsharp import __version__
from xsharp.cluster.policy import Policy
from xsharp.cluster.store import Store
from xsharp.serving.predictor import PredictorCache
from xsharp.spec import format_error_list

from . import cluster, console, datasets, jobs, models, monitoring, searches, system, ui
from .body_gate import MAX_BODY, MAX_DEPTH, RequestBodyGate, error_response
from .schemas import ErrorOut

# --------------------------------------------------------------------------- OpenAPI: the 4xx answers
ERRORS = {
    400: "A file path that leaves the job's artifact folder; a header that must come once sent twice",
    401: "No bearer token, or one the server does not know",
    403: "A submission whose data path or priority the server does not allow; a dataset action only its owner or an admin may take",
    404: "No such job (or artifact, search, import, dataset or model), or another user's: the two answers are the same",
    409: "The job's state does not allow it",
    415: "A prediction's body that is neither JSON rows, a multipart form with a file, nor an image/, audio/ or text/plain file",
    429: "Too many of your imports are queued or running",
    422: f"A body or parameter the server cannot take: the field, its value and the bound; also bad JSON, a key twice in one object, nesting deeper than {MAX_DEPTH}",
}


def error_statuses(method: str, path: str, operation: dict) -> set[int]:
    """The 4xx statuses ``operation`` can answer with, from what it takes."""
    statuses = set()
    if operation.get("security"):
        statuses.add(401)
    if operation.get("parameters") or "requestBody" in operation:
        statuses.add(422)
    if "requestBody" in operation:  # a submission: its size, its data and its priority
        statuses |= {413} if path.endswith("/predict") else {403, 413}
    if path.startswith("/v1/datasets"):  # the catalog: hidden datasets are 404, owner / admin actions 403
        if "{" in path:
            statuses.add(404)
        if path.endswith(("/share", "/unshare")) or method == "delete":
            statuses.add(403)
        if method == "post" and path == "/v1/datasets":
            statuses.add(429)
    if "{model_id}" in path:  # another user's model is a 404, as a missing one is
        statuses.add(404)
        if path.endswith("/onnx"):  # a model ONNX cannot express
            statuses.add(422)
        if path.endswith("/predict"):  # a body that is neither JSON rows nor a file
            statuses.add(415)
    if "{job_id}" in path:
        statuses.add(404)
        if method in ("post", "delete"):  # pause, resume, stop, delete
            statuses.add(409)
    if "{path}" in path:
        statuses.add(400)
    return statuses


def document_errors(schema: dict, max_body: int = MAX_BODY) -> dict:
    """Every operation's 4xx answers in ``schema``, each an ErrorOut; FastAPI's own 422 model goes."""
    ref = {"$ref": "#/components/schemas/ErrorOut"}
    descriptions = ERRORS | {413: f"The body is over {max_body} bytes (a prediction's: over {max(max_body, models.MAX_UPLOAD)} bytes)"}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components["ErrorOut"] = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in sorted(error_statuses(method, path, operation)):
                responses[str(status)] = {"description": descriptions[status], "content": {"application/json": {"schema": ref}}}
                if status == 401:
                    responses["401"]["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
    return schema


def install_error_handlers(app: FastAPI) -> None:
    """Every 4xx as one :class:`ErrorOut` body: a parameter's or the body's problems with their field paths."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = []
        for err in exc.errors():
            err = dict(err)
            loc = tuple(err.get("loc", ()))
            err["loc"] = loc[1:] if loc[:1] == ("body",) else loc
            errors.append(err)
        return error_response(422, format_error_list(errors))

    @app.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException):
        detail = exc.detail if isinstance(exc.detail, list) else [exc.detail]
        return error_response(exc.status_code, [str(line) for line in detail], exc.headers)


def create_app(
    store: Store,
    scheduler=None,
    max_body: int = MAX_BODY,
    *,
    exporter_urls: list[str] = (),
    grafana_url: str | None = None,
    recipes_dir=None,
    policy: Policy | None = None,
    imports: datasets.ImportWorker | None = None,
) -> FastAPI:
    app = FastAPI(
        title="xsharp",
        version=__version__,
        description="Submit and manage training jobs on an xsharp cluster. Every call but /healthz and /metrics needs a bearer token. "
        'Every 4xx answer is {"detail": [one line per problem]}.',
    )
    app.state.store = store
    app.state.scheduler = scheduler
    app.state.policy = policy or Policy.guarding(store.root)  # what a job may read and how big it may be
    app.state.imports = imports  # the dataset import worker; None: made at the first import
    app.state.predictors = PredictorCache()  # models answering /predict, the recently used ones loaded
    app.include_router(jobs.router)
    app.include_router(datasets.router)
    app.include_router(searches.router)
    app.include_router(models.router)
    app.include_router(cluster.router)
    app.include_router(system.router)
    app.include_router(console.router)  # the console's read-only extras: /v1/me, /v1/modules, /v1/spec/..., /v1/recipes
    app.include_router(monitoring.router)  # /v1/cluster/gpus, /v1/cluster/dashboards
    app.include_router(ui.pages)
    app.mount("/ui/static", StaticFiles(directory=ui.STATIC), name="ui-static")
    monitoring.configure(app, exporter_urls, grafana_url)
    app.state.recipes_dir = console.recipes_folder(recipes_dir)

    install_error_handlers(app)
    generated = app.openapi
    app.openapi = lambda: app.openapi_schema or document_errors(generated(), max_body)
    app.add_middleware(RequestBodyGate, limit=max_body, upload_limit=max(max_body, models.MAX_UPLOAD))
    return app
