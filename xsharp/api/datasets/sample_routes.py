"""/v1/datasets/{owner}/{name}/samples: a few rows of a dataset, thumbnails of images and values of others."""

from __future__ import annotations

import base64
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from xsharp.cluster.store import User
from xsharp.data import samples as sampling
from xsharp.data.catalog import Catalog
from xsharp.fileguard import DataError

from ..auth import current_user
from .access import get_catalog, visible_versions
from .catalog_routes import Name

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

MAX_SAMPLES = sampling.MAX_SAMPLES


class Sample(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    split: str
    label: int
    class_name: str = Field(alias="class")
    png_base64: str | None = None  # images: a PNG thumbnail
    value: Any = None  # other rows: the row as JSON, long strings and rows cut short


class SamplesOut(BaseModel):
    ref: str
    kind: str
    shape: list[int]
    samples: list[Sample]


@router.get("/{owner}/{name}/samples", response_model=SamplesOut, summary="A few rows of a dataset: thumbnails of images, values of others")
def samples(
    owner: Name,
    name: Name,
    version: int | None = Query(None, ge=1, le=999_999_999, description="default: the newest you may see"),
    count: int = Query(12, ge=1, le=MAX_SAMPLES),
    split: Literal["train", "val", "test"] = Query("train"),
    label: int | None = Query(None, ge=0, le=10_000_000, description="only rows of this class (its index in classes)"),
    user: User = Depends(current_user),
    catalog: Catalog = Depends(get_catalog),
) -> SamplesOut:
    """Read from the split's first shards (at most a few), spread over the classes as evenly as they allow."""
    visible = visible_versions(catalog, owner, name, user)
    m = visible[-1] if version is None else next((v for v in visible if v.version == version), None)
    if m is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, [f"{owner}/{name} has no version {version}"])
    if label is not None and label >= m.n_classes:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [f"label: {m.ref} has {m.n_classes} classes (0 to {m.n_classes - 1}), got {label}"])
    try:
        picked = sampling.pick(catalog.path_of(m), m, split, count, label)
    except DataError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [str(e)]) from None
    out = []
    for s in picked:
        if sampling.is_image(m, s.x):
            out.append(Sample(split=split, label=s.label, class_name=s.cls, png_base64=base64.b64encode(sampling.png(s.x)).decode("ascii")))
        else:
            out.append(Sample(split=split, label=s.label, class_name=s.cls, value=sampling.json_row(s.x)))
    return SamplesOut(ref=m.ref, kind=m.kind, shape=m.shape, samples=out)
