"""A registered model on the Ray cluster behind Ray Serve: ``xsharp serve MODEL --replicas N``.

Each replica is a small FastAPI app answering exactly as the job service's
``POST /v1/models/{id}/predict`` does (the same handler, micro-batching, limits and error
bodies) at the same path, so a client moves from the service to a deployment by changing only
the base URL. Callers are let in by the same bearer tokens: a replica reads the job store's
users (the store folder must be one every node sees, as the job service's artifacts are), and
only the model's owner and admins get answers; anyone else gets the same 404 as the service.

Ray is imported here and only here (the `serve` command), never by the service or the CLI's
other commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse

from xsharp import __version__
from xsharp.api.app import install_error_handlers
from xsharp.api.auth import current_user, get_store
from xsharp.api.body_gate import RequestBodyGate
from xsharp.api.models import MAX_UPLOAD, PREDICT_BODY, answer, input_out, loaded_predictor, predictor_for
from xsharp.api.schemas import ModelInputOut, PredictOut
from xsharp.cluster.store import Store, User

from .predictor import PredictorCache

APP_PREFIX = "xsharp-model-"  # a deployment's Serve application: this and the model id


def route_of(model_id: int) -> str:
    """Where a deployed model answers: the service's own path for it."""
    return f"/v1/models/{int(model_id)}"


def model_app(store_root: str, model_id: int) -> FastAPI:
    """The ASGI app of one replica serving ``model_id``; its routes sit under :func:`route_of`."""
    app = FastAPI(title=f"xsharp model {model_id}", version=__version__, root_path_in_servers=False)
    app.state.store = Store(store_root)
    app.state.predictors = PredictorCache(capacity=1)
    install_error_handlers(app)

    @app.post("/predict", response_model=PredictOut, openapi_extra=PREDICT_BODY, summary="Predict classes of raw rows or an uploaded file")
    async def predict(
        request: Request,
        top_k: int = Query(5, ge=1, le=1000, description="classes returned per row, most probable first"),
        user: User = Depends(current_user),
        store: Store = Depends(get_store),
    ) -> JSONResponse:
        """As the job service's `POST /v1/models/{id}/predict`."""
        return await answer(request, await loaded_predictor(request, model_id, user, store), model_id, top_k)

    @app.get("/input", response_model=ModelInputOut, summary="What the model takes")
    def model_input(request: Request, user: User = Depends(current_user), store: Store = Depends(get_store)) -> ModelInputOut:
        return input_out(predictor_for(request, model_id, user, store))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True, "model": model_id}

    app.add_middleware(RequestBodyGate, limit=MAX_UPLOAD, guarded="/")  # every route here but /healthz takes a token
    return app


@dataclass(frozen=True)
class Deployment:
    model_id: int
    app_name: str
    url: str  # where predictions are answered: {url}/predict
    replicas: int


def deploy(store_root: Path, model_id: int, replicas: int, host: str, port: int, cpus_per_replica: float) -> Deployment:
    """Deploy (or redeploy, with the new replica count) ``model_id`` on the connected Ray cluster
    and wait until every replica answers. Serve's HTTP proxy listens on ``host:port``; where Serve
    already runs on the cluster, its proxy's address stays as it was."""
    from ray import serve  # the serve extra: imported once deploying, so that `xsharp serve` without it can say so

    @serve.ingress()
    class ModelServer:
        def __init__(self, root: str, model: int):
            self.root, self.model = root, model

        def __serve_build_asgi_app__(self) -> FastAPI:
            return model_app(self.root, self.model)

    name = f"{APP_PREFIX}{model_id}"
    serve.start(http_options={"host": host, "port": port})
    server = serve.deployment(
        ModelServer,
        name=name,
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus_per_replica},
        max_ongoing_requests=64,
    )
    serve.run(server.bind(str(store_root), int(model_id)), name=name, route_prefix=route_of(model_id))
    return Deployment(model_id, name, f"http://{host}:{port}{route_of(model_id)}", replicas)


def undeploy(model_id: int) -> bool:
    """Remove ``model_id``'s deployment; Serve itself stops once it serves nothing. False: none was there."""
    from ray import serve  # the serve extra: as in deploy()

    name = f"{APP_PREFIX}{model_id}"
    if name not in serve.status().applications:
        return False
    serve.delete(name)
    if not serve.status().applications:
        serve.shutdown()
    return True
