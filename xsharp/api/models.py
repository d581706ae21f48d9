"""/v1/models: the model registry. Each job that finishes SUCCEEDED registers its model (a
search, its best trial's) as the next version of its spec's name; the lineage says which job,
user, spec, metrics and dataset made it. Another user's model is a 404, as a missing one is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi import Path as PathParam

from xsharp.cluster.store import RegisteredModel, Store, User

from .auth import current_user, get_store
from .schemas import ModelDetail, ModelOut

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
    from xsharp.algos import Model
    from xsharp.export.onnx import ExportError, export_model

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
