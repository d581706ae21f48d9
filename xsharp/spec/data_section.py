"""The data section of a job spec: where the rows come from and how they are read."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from xsharp.algos import datasets
from xsharp.algos.features import STEPS, AugmentOptions
from xsharp.algos.training import MAX_PREFETCH_KB, PREFETCH_KB
from xsharp.data.catalog import DatasetRef

from .layers import FeatureStep, _normalise_layer
from .section import Section

MAX_STEPS = 64  # preprocessing steps in data.features
MAX_SPEAKERS = 4096  # names in data.test_speakers


def _one_of(names: Iterable[str]) -> Callable[[dict[str, Any]], None]:
    """JSON Schema of a ``str | None`` field that takes only these names (a validator checks them)."""
    return lambda schema: schema["anyOf"][0].update(enum=sorted(names))


class DataSpec(Section):
    """Where the data comes from: a named dataset or a file."""

    model_config = ConfigDict(  # _one_source, for JSON Schema: exactly one of dataset and path is a string
        json_schema_extra={"oneOf": [{"required": [k], "properties": {k: {"type": "string"}}} for k in ("dataset", "path")]}
    )

    dataset: str | None = Field(
        None,
        description=f"a bundled dataset ({', '.join(sorted(datasets.NAMED))}) or an imported one: NAME, NAME@VERSION, OWNER/NAME[@VERSION] (xsharp data list)",
        json_schema_extra={"pattern": r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,63}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?:@[0-9]{1,9})?$"},
    )
    stream: bool | None = Field(
        None,
        description="an imported dataset: true streams its shards (local and data_parallel modes), false reads it whole; default: stream when it is over 1 GiB as floats",
    )
    path: str | None = Field(None, description="a data file; its format comes from the suffix or `format`")
    format: str | None = Field(None, description=f"file format: {', '.join(sorted(datasets.FORMATS))}", json_schema_extra=_one_of(datasets.FORMATS))
    test_fraction: float = Field(0.2, ge=0, lt=1, description="share held out for test when the data has no test split")
    validation_fraction: float = Field(0.1, ge=0, lt=1, description="share of the training rows held out for validation")
    limit: int | None = Field(None, gt=0, le=1_000_000_000, description="use only this many rows (quick runs)")
    labels: str | None = Field(None, description="idx: the labels file of an images file (default: its MNIST-named neighbour)")
    sample_rate: int | None = Field(None, ge=1000, le=384_000, description="wav: resample every file to this rate (default 16000)")
    duration: float | None = Field(None, gt=0, le=3600, description="wav: cut or zero-pad every file to this many seconds (default 1)")
    test_speakers: Annotated[list[str], Field(min_length=1, max_length=MAX_SPEAKERS)] | Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None, description="wav: hold out these speakers whole for test, or this share of them (e.g. 0.25); replaces test_fraction"
    )
    label_column: str | None = Field(None, description="csv: the label column (default 'label')")
    text_column: str | None = Field(None, description="csv: the text column (default 'text')")
    size: Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(min_length=2, max_length=2)] | None = Field(
        None, description="images: [H, W] every image is brought to (default: the images' own size, which must then agree)"
    )
    resize: Literal["squash", "crop", "fill"] | None = Field(
        None,
        description="images with a size: squash (ignore the aspect ratio, the default), crop (fit the short side, cut the centre) or fill (fit the long side, pad with zeros)",
    )
    channels: Literal[1, 3] | None = Field(None, description="images: 1 (grey, (H, W)) or 3 (RGB, (3, H, W), the default)")
    feature_columns: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(min_length=1, max_length=65536)] | None = Field(
        None, description="table: the feature columns (default: every column but the label)"
    )
    skip_bad: bool = Field(False, description="image and audio folders: leave out unreadable files (counted) instead of stopping at the first")
    features: list[FeatureStep] = Field(
        default_factory=list, max_length=MAX_STEPS, description=f"preprocessing fitted on the training rows and saved with the model; steps: {', '.join(STEPS)}"
    )
    augment: AugmentOptions | None = Field(None, description="images: add randomly shifted / mirrored copies of the training rows")
    prefetch: int = Field(
        PREFETCH_KB,
        ge=0,
        le=MAX_PREFETCH_KB,
        description="input overlap (local and data_parallel modes, rows in memory): gather the next batch's rows on a background thread while this batch computes, "
        "for batches of at least this many KiB (smaller ones are gathered inline, where a thread hand-off costs more than the copy); 0: off. The results are the same either way",
    )

    @field_validator("features", mode="before")
    @classmethod
    def _normalise_features(cls, v: Any) -> Any:
        return [_normalise_layer(item) for item in v] if isinstance(v, list) else v

    @field_validator("test_speakers", mode="before")
    @classmethod
    def _speakers(cls, v: Any) -> Any:
        if v is None or (isinstance(v, list) and all(isinstance(s, str) for s in v) and 0 < len(v) <= MAX_SPEAKERS):
            return v
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1:
            return v
        raise PydanticCustomError(
            "test_speakers", "must be a non-empty list of at most {n} speaker names or a share of the speakers in (0, 1)", {"n": MAX_SPEAKERS}
        )

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str | None) -> str | None:
        if v is not None and v not in datasets.NAMED and not DatasetRef.looks_like(v):
            raise PydanticCustomError(
                "dataset",
                "not a dataset name: a bundled one ({known}) or an imported one (NAME, NAME@VERSION or OWNER/NAME[@VERSION], at most 64 letters, digits, '.', '_' or '-' a part)",
                {"known": ", ".join(sorted(datasets.NAMED))},
            )
        return v

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str | None) -> str | None:
        if v is not None and v not in datasets.FORMATS:
            raise PydanticCustomError("format", "unknown format; known: {known}", {"known": ", ".join(sorted(datasets.FORMATS))})
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.dataset is None) == (self.path is None):
            raise PydanticCustomError("rule", "give exactly one of dataset (a name) or path (a file)")
        return self
