"""/v1/datasets (POST) and /v1/datasets/imports: start, follow and cancel an import."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi import Path as PathParam
from pydantic import BaseModel

from xsharp.algos.datasets import FORMATS
from xsharp.cluster.policy import Policy
from xsharp.cluster.store import QUEUED, RUNNING, Import, Store, User
from xsharp.data.catalog import DatasetRef
from xsharp.fileguard import DataError, Forbidden

from ..auth import current_user, get_store
from .access import get_policy
from .import_worker import ImportRequest, ImportWorker, get_imports

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

MAX_PENDING_IMPORTS = 8  # a user's imports QUEUED or RUNNING at once; more is 429
IMPORT_FORMATS = ("images", "audio", "table", "text")

ImportId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="the import's id")]


class ImportOut(BaseModel):
    id: int
    user: str
    name: str
    state: str  # QUEUED | RUNNING | DONE | FAILED | CANCELLED
    done: int
    total: int
    unit: str  # what done and total count: files, rows ...
    message: str | None = None  # why it failed, or who cancelled it
    ref: str | None = None  # owner/name@version, once DONE
    created: float
    started: float | None = None
    finished: float | None = None
    request: dict[str, Any]


def _import_out(rec: Import) -> ImportOut:
    return ImportOut(**rec.public())


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=ImportOut, summary="Import a dataset from a path on the server")
def start_import(
    body: ImportRequest,
    user: User = Depends(current_user),
    store: Store = Depends(get_store),
    policy: Policy = Depends(get_policy),
    worker: ImportWorker = Depends(get_imports),
) -> ImportOut:
    """Queue an import of a folder or file under one of the server's data roots (403 otherwise);
    it runs in the background: poll `GET /v1/datasets/imports/{id}` until DONE (its `ref` names
    the new version) or FAILED (its `message` says why)."""
    if not DatasetRef.looks_like(f"{user.name}/{body.name}"):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [f"user {user.name!r}: a name that cannot own datasets (letters, digits, '.', '_' or '-')"])
    if body.format is not None and body.format not in IMPORT_FORMATS and body.format not in FORMATS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [f"format: unknown format; known: {', '.join([*IMPORT_FORMATS, *sorted(FORMATS)])}"])
    try:
        real = policy.guard().check(body.path, "path")
    except Forbidden as e:
        raise HTTPException(status.HTTP_403_FORBIDDEN, [str(e)]) from None
    except DataError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [str(e)]) from None
    rec = store.add_import_capped(user.name, body.name, body.model_dump() | {"path": str(real)}, MAX_PENDING_IMPORTS)
    if rec is None:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, [f"you have {MAX_PENDING_IMPORTS} imports queued or running; wait for one to finish"])
    worker.submit(rec)
    return _import_out(rec)


@router.get("/imports", response_model=list[ImportOut], summary="Your imports, newest first")
def list_imports(limit: int = Query(50, ge=1, le=1000), user: User = Depends(current_user), store: Store = Depends(get_store)) -> list[ImportOut]:
    return [_import_out(r) for r in store.imports(user=user.name, limit=limit)]


@router.get("/imports/{import_id}", response_model=ImportOut, summary="One import: its state and progress")
def get_import(import_id: ImportId, user: User = Depends(current_user), store: Store = Depends(get_store)) -> ImportOut:
    rec = store.get_import(import_id)
    if rec is None or (rec.user != user.name and not user.admin):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no import {import_id}")
    return _import_out(rec)


@router.delete("/imports/{import_id}", response_model=ImportOut, summary="Cancel an import")
def cancel_import(
    import_id: ImportId, user: User = Depends(current_user), store: Store = Depends(get_store), worker: ImportWorker = Depends(get_imports)
) -> ImportOut:
    """Its owner or an admin (404 for others, as for a missing import). A QUEUED import is
    CANCELLED at once; a RUNNING one stops at its next progress report (poll it until CANCELLED,
    or DONE if it finished first); a finished one is 409."""
    rec = store.get_import(import_id)
    if rec is None or (rec.user != user.name and not user.admin):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no import {import_id}")
    if rec.state not in (QUEUED, RUNNING):
        raise HTTPException(status.HTTP_409_CONFLICT, [f"import {import_id} is {rec.state}: nothing to cancel"])
    return _import_out(worker.cancel(import_id, user.name) or rec)  # it may have ended meanwhile: its record as it is
