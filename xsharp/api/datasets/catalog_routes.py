"""/v1/datasets/{owner}/{name}: the datasets a user may use, deleting and sharing them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict

from xsharp.cluster.store import User
from xsharp.data.catalog import NAME, Catalog
from xsharp.data.manifest import Manifest

from ..auth import current_user
from .access import get_catalog, may_see, visible_versions

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

Name = Annotated[str, PathParam(pattern=f"^{NAME}$", description="letters, digits, '.', '_' or '-', at most 64")]
Version = Query(None, ge=1, le=999_999_999, description="one version (default: every version)")


class DatasetVersion(BaseModel):
    """A version's manifest summary (everything but its shard list)."""

    model_config = ConfigDict(extra="allow")
    name: str
    owner: str
    version: int
    ref: str
    kind: str
    classes: list[str]
    counts: dict[str, list[int]]
    rows: dict[str, int]
    shape: list[int]
    dtype: str
    shared: bool
    created: float
    bytes: int
    shard_count: int


class DatasetOut(BaseModel):
    owner: str
    name: str
    shared: bool  # every version is
    versions: list[DatasetVersion]


class Deleted(BaseModel):
    deleted: list[str]


def _version_out(m: Manifest) -> DatasetVersion:
    return DatasetVersion(**m.summary())


def _dataset_out(owner: str, name: str, versions: list[Manifest]) -> DatasetOut:
    return DatasetOut(owner=owner, name=name, shared=all(m.shared for m in versions), versions=[_version_out(m) for m in versions])


@router.get("", response_model=list[DatasetOut], summary="The datasets you may use")
def list_datasets(user: User = Depends(current_user), catalog: Catalog = Depends(get_catalog)) -> list[DatasetOut]:
    """Your own datasets and those an admin shared (an admin sees all), each with every version you may see."""
    groups: dict[tuple[str, str], list[Manifest]] = {}
    for m in catalog.manifests():
        if may_see(m, user):
            groups.setdefault((m.owner, m.name), []).append(m)
    return [_dataset_out(owner, name, ms) for (owner, name), ms in sorted(groups.items())]


@router.get("/{owner}/{name}", response_model=DatasetOut, summary="One dataset: its versions and their manifests")
def get_dataset(owner: Name, name: Name, user: User = Depends(current_user), catalog: Catalog = Depends(get_catalog)) -> DatasetOut:
    return _dataset_out(owner, name, visible_versions(catalog, owner, name, user))


@router.delete("/{owner}/{name}", response_model=Deleted, summary="Delete a dataset, or one version of it")
def delete_dataset(
    owner: Name, name: Name, version: int | None = Version, user: User = Depends(current_user), catalog: Catalog = Depends(get_catalog)
) -> Deleted:
    """Its owner or an admin; jobs already pinned to a deleted version fail when they read it."""
    visible = visible_versions(catalog, owner, name, user)
    if owner != user.name and not user.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, [f"{owner}/{name}: only its owner or an admin deletes a dataset"])
    if version is not None and version not in [m.version for m in visible]:
        raise HTTPException(status.HTTP_404_NOT_FOUND, [f"{owner}/{name} has no version {version}"])
    removed = catalog.delete(owner, name, version)
    return Deleted(deleted=[f"{owner}/{name}@{v}" for v in removed])


def _set_shared(owner: str, name: str, shared: bool, user: User, catalog: Catalog) -> DatasetOut:
    if not user.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, ["only an admin shares or unshares a dataset"])
    versions = visible_versions(catalog, owner, name, user)
    for m in versions:
        if m.shared != shared:
            m.shared = shared
            catalog.update(m)
    return _dataset_out(owner, name, versions)


@router.post("/{owner}/{name}/share", response_model=DatasetOut, summary="Share every version of a dataset with every user (admins)")
def share(owner: Name, name: Name, user: User = Depends(current_user), catalog: Catalog = Depends(get_catalog)) -> DatasetOut:
    """Versions imported later are not shared until this is called again."""
    return _set_shared(owner, name, True, user, catalog)


@router.post("/{owner}/{name}/unshare", response_model=DatasetOut, summary="Make a dataset its owner's again (admins)")
def unshare(owner: Name, name: Name, user: User = Depends(current_user), catalog: Catalog = Depends(get_catalog)) -> DatasetOut:
    return _set_shared(owner, name, False, user, catalog)
