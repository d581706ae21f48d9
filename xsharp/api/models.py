"""/v1/models: the model registry. Each job that finishes SUCCEEDED registers its model (a
search, its best trial's) as the next version of its spec's name; the lineage says which job,
user, spec, metrics and dataset made it. Another user's model is a 404, as a missing one is."""

from __future__ import annotations

import json
import zipfile
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from xsharp.algos import Model
from xsharp.cluster.store import RegisteredModel, Store, User
from xsharp.export.onnx import ExportError, export_model
from xsharp.serving.inputs import InputError, ModelInput, rows_from_file, rows_from_json
from xsharp.serving.predictor import Predictor, PredictorCache

from .auth import PARSED, current_user, get_store, is_json
from .schemas import ModelDetail, ModelInputOut, ModelOut, PredictIn, PredictOut

router = APIRouter(prefix="/v1/models", tags=["models"])

ModelId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="the model's id")]  # SQLite's integer range


def visible_model(model_id: int, user: User, store: Store) -> RegisteredModel:
    """The model, if it exists and ``user`` may see it (its owner or an admin); else 404."""
    model = store.model(model_id)
    if model is None or (model.user != user.name and not user.admin):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {model_id}")
    return model


def _out(model: RegisteredModel) -> ModelOut:
    return ModelOut(**{k: v for k, v in model.public().items() if k != "spec"})


@router.get("", response_model=list[ModelOut], summary="List registered models")
def list_models(
    name: str | None = Query(None, max_length=200, description="only this name's versions"),
    user_name: str | None = Query(None, alias="user", max_length=200, description="admins: only this user's models"),
    limit: int = Query(100, ge=1, le=10_000),
    offset: int = Query(0, ge=0, le=2**62),
    user: User = Depends(current_user),
    store: Store = Depends(get_store),
) -> list[ModelOut]:
    """Your models (an admin sees everyone's), oldest first."""
    owner = user_name if user.admin else user.name
    return [_out(m) for m in store.models(user=owner, name=name, limit=limit, offset=offset)]


@router.get("/{model_id}", response_model=ModelDetail, summary="One model with its lineage")
def get_model(model_id: ModelId, user: User = Depends(current_user), store: Store = Depends(get_store)) -> ModelDetail:
    """The job that trained it, its user and time, the job's spec and metrics, and the dataset (name and version) or data path."""
    return ModelDetail(**visible_model(model_id, user, store).public())


@router.delete("/{model_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Take a model out of the registry")
def delete_model(model_id: ModelId, user: User = Depends(current_user), store: Store = Depends(get_store)) -> Response:
    """Its owner or an admin; the job and its artifacts stay."""
    visible_model(model_id, user, store)
    if not store.delete_model(model_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {model_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{model_id}/onnx",
    summary="The model as an ONNX file",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the ONNX model"}},
)
def onnx_file(model_id: ModelId, user: User = Depends(current_user), store: Store = Depends(get_store)) -> Response:
    """Exported with `xsharp export`'s exporter; a module or feature step ONNX cannot express is a 422 naming it."""
    model = visible_model(model_id, user, store)
    path = store.job_dir(model.job_id) / model.path
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {model_id}: its file is gone (job {model.job_id} was deleted)")
    try:
        proto = export_model(Model.load(path))
    except ExportError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [f"model {model_id} cannot be exported to ONNX: {e}"]) from None
    except (OSError, ValueError) as e:  # the raw input shape read off data that is no longer here
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [f"model {model_id} cannot be exported to ONNX: {e}"]) from None
    filename = f"{model.name}-v{model.version}.onnx".replace('"', "")
    return Response(proto.SerializeToString(), media_type="application/octet-stream", headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# --------------------------------------------------------------------------- predictions
MAX_UPLOAD = 8 << 20  # bytes of a predict request's body: a photo, a few seconds of WAV, JSON rows
INLINE_ROWS_BYTES = 64 * 1024  # JSON rows up to this size are read on the event loop (well under a millisecond)
FILE_TYPES = ("image/", "audio/", "text/plain", "application/octet-stream")  # a body that is the file itself


def predictor_of(request: Request, model: RegisteredModel, store: Store, cached_only: bool = False) -> Predictor | None:
    """The model's predictor, loaded once and kept while it is used (the app's PredictorCache);
    with ``cached_only``, None where it is not loaded yet."""
    path = store.job_dir(model.job_id) / model.path
    cache: PredictorCache = request.app.state.predictors
    try:
        return cache.cached(path) if cached_only else cache.get(path)
    except FileNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {model.id}: its file is gone (job {model.job_id} was deleted)") from None
    except InputError as e:  # a model that cannot take predictions as it was saved
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [f"model {model.id}: {e.problem}"]) from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # numpy's and zipfile's words may quote the file
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [f"model {model.id}: its file cannot be read as a model"]) from None


async def loaded_predictor(request: Request, model_id: int, user: User, store: Store) -> Predictor:
    """``predictor_for`` from an event loop: a loaded model is found right there (one indexed read
    and a stat), and only a model still to load goes to a worker thread."""
    model = visible_model(model_id, user, store)
    return predictor_of(request, model, store, cached_only=True) or await run_in_threadpool(predictor_of, request, model, store)


def predictor_for(request: Request, model_id: int, user: User, store: Store) -> Predictor:
    """The predictor of a model ``user`` may see (else 404)."""
    return predictor_of(request, visible_model(model_id, user, store), store)


def input_out(predictor: Predictor) -> ModelInputOut:
    return ModelInputOut(**predictor.input.describe(), classes=predictor.classes, engine=predictor.engine)


@router.get("/{model_id}/input", response_model=ModelInputOut, summary="What a model takes")
def model_input(model_id: ModelId, request: Request, user: User = Depends(current_user), store: Store = Depends(get_store)) -> ModelInputOut:
    """The kind of row (numbers, image, audio, text or table), one raw row's shape, the files an upload may be, the classes, and what computes the answers."""
    return input_out(predictor_for(request, model_id, user, store))


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PredictIn.model_json_schema()},
            "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/{model_id}/predict",
    response_model=PredictOut,
    summary="Predict classes of raw rows or an uploaded file",
    openapi_extra=PREDICT_BODY,
)
async def predict(
    model_id: ModelId,
    request: Request,
    top_k: int = Query(5, ge=1, le=1000, description="classes returned per row, most probable first"),
    user: User = Depends(current_user),
    store: Store = Depends(get_store),
) -> JSONResponse:
    """The model's saved preprocessing, then its class probabilities; concurrent requests to one
    model are computed as one batch. The body is JSON `{"rows": [...]}` (see `/input` for a row's
    shape), a multipart form with one `file`, or the file itself (an image/, audio/ or text/plain
    content type). Every problem is a 4xx naming the field: a wrong shape or type, a file that
    does not decode, a body over the size limit."""
    return await answer(request, await loaded_predictor(request, model_id, user, store), model_id, top_k)


async def answer(request: Request, predictor: Predictor, model_id: int, top_k: int) -> JSONResponse:
    """A predict request's answer from model ``model_id``'s predictor (its caller already let in):
    the job service's route and a model deployed on Ray Serve (``xsharp serve``) both answer with this."""
    try:
        rows = await _rows(request, predictor.input)
        scores = await predictor.predict(rows, top_k)
    except InputError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [str(e)]) from None
    body = {"model": model_id, "predictions": [{"top": [s.__dict__ for s in row]} for row in scores]}
    return JSONResponse(body)


async def _rows(request: Request, spec: ModelInput) -> np.ndarray:
    content_type = request.headers.get("content-type", "").encode("latin-1")
    media = (content_type or b"application/json").split(b";")[0].strip().lower().decode("latin-1")
    if is_json(content_type):  # as the body gate decides
        body = await request.body()
        value = request.scope.get("state", {}).get(PARSED)  # the body gate's parse
        if value is None:
            try:
                value = json.loads(body)
            except (ValueError, RecursionError):
                raise InputError("body", "not valid JSON, or nested too deep") from None
        if not isinstance(value, dict) or set(value) != {"rows"}:
            raise InputError(
                "body", 'an object {"rows": [...]} expected' + (f"; unknown fields {sorted(set(value) - {'rows'})[:5]}" if isinstance(value, dict) else "")
            )
        # only then can a row hold a boolean (numpy would read it as 1 or 0): the rows are scanned for them;
        # a UTF-16 or -32 body (NUL bytes up front) may spell them otherwise
        booleans = b"true" in body or b"false" in body or b"\x00" in body[:4]
        if len(body) <= INLINE_ROWS_BYTES:  # a few rows: quicker here than a thread hop
            return rows_from_json(value["rows"], spec, may_hold_booleans=booleans)
        return await run_in_threadpool(rows_from_json, value["rows"], spec, "rows", booleans)
    if media == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=0)
        except Exception:  # starlette's MultiPartException and the parser's own: a malformed form
            raise InputError("body", "not a readable multipart/form-data body with one file") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InputError("file", "a multipart form needs one file field named 'file'")
        data = await upload.read()
        return await run_in_threadpool(rows_from_file, data, spec)
    if media.startswith(FILE_TYPES):
        return await run_in_threadpool(rows_from_file, await request.body(), spec)
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        ["body: content type not taken; send application/json rows, a multipart/form-data file, or the file itself as image/*, audio/*, text/plain"],
    )
