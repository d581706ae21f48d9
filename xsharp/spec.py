"""JobSpec: what to train, on which data, how, with what resources. Validated once, the same
schema for YAML files, REST JSON and CLI flags.

A bad spec raises :class:`SpecError` with one line per problem, each naming the field path
and the value: ``model[1].rbm.hidden: must be > 0, got -3``.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, create_model, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from xsharp.algos import datasets
from xsharp.algos.features import STEPS, AugmentOptions
from xsharp.algos.modules import MODULES
from xsharp.algos.modules.base import SpecModel
from xsharp.algos.training import MAX_PREFETCH_KB, PREFETCH_KB, PhaseSpec, PretrainSpec, ScheduleSpec, TrainSpec

__all__ = ["JobSpec", "DataSpec", "PhaseSpec", "PretrainSpec", "ScheduleSpec", "TrainSpec", "Resources", "ParallelSpec", "SpecError", "load_spec", "parse_spec"]

MODES = ("local", "data_parallel", "param_server", "pipeline", "hybrid")
SOLVE_MODES = ("local", "data_parallel")  # the modes that run a closed-form solve (elm, elm_ae)
MAX_MODULES = 256  # modules in a model
MAX_STEPS = 64  # preprocessing steps in data.features
MAX_SPEAKERS = 4096  # names in data.test_speakers


class SpecError(ValueError):
    """A job spec that cannot run; ``problems`` holds one message per bad field."""

    def __init__(self, problems: list[str], source: str = "spec"):
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(problems))

    def __reduce__(self):  # a runner's SpecError reaches the scheduler pickled: keep it whole
        return (SpecError, (self.problems, self.source))


class _Strict(SpecModel):
    """A section of the spec: strict, as module options are."""


# --------------------------------------------------------------------------- model list
def _item(kind: str) -> dict:
    """JSON Schema of a ``kind`` item in any of its forms (``{kind: options}``, ``{kind: null}``, ``kind``)."""
    return {"anyOf": [{"const": kind}, {"type": "object", "required": [kind]}]}


class _Shorthands:
    """Adds the short forms :func:`_normalise_layer` reads (``- softmax``, ``- softmax: null``) to
    the JSON Schema of a union, for the names whose options all have defaults."""

    def __init__(self, registry: dict):
        self.kinds = [k for k, cls in registry.items() if not any(f.is_required() for f in cls.Options.model_fields.values())]

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        if self.kinds:
            schema["oneOf"] = [
                *schema["oneOf"],
                {"enum": self.kinds},
                {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": {k: {"type": "null"} for k in self.kinds}, "additionalProperties": False},
            ]
        return schema


def _single_key_union(registry: dict, suffix: str, noun: str):
    """A tagged union of ``{name: options}`` items, one member per entry of ``registry`` (whose
    classes carry ``Options`` and ``summary``); errors name the item and list the known names."""

    def kind_of(item: Any) -> str | None:
        if isinstance(item, BaseModel):  # serialising a validated spec
            return next(iter(type(item).model_fields))
        if isinstance(item, dict) and len(item) == 1:
            kind = next(iter(item))
            return kind if kind in registry else None
        return None

    members = []
    for kind, cls in registry.items():
        item = create_model(
            f"{cls.__name__}{suffix}",
            __config__=ConfigDict(extra="forbid", strict=True, title=f"{kind} {noun}"),
            __doc__=cls.summary,
            **{kind: (cls.Options, ...)},
        )
        members.append(Annotated[item, Tag(kind)])
    return Annotated[
        Union[tuple(members)],
        Discriminator(
            kind_of,
            custom_error_type=noun,
            custom_error_message=f"must be one {noun} as {{name: options}}, name one of {', '.join(registry)}",
        ),
        _Shorthands(registry),
    ]


ModuleLayer = _single_key_union(MODULES, "Layer", "module")
FeatureStep = _single_key_union(STEPS, "Step", "step")


def _normalise_layer(item: Any) -> Any:
    """``- softmax`` and ``- softmax: null`` both mean ``- softmax: {}``."""
    if isinstance(item, str):
        return {item: {}}
    if isinstance(item, dict) and len(item) == 1:
        (kind, opts), = item.items()
        if opts is None:
            return {kind: {}}
    return item


def layer_kind(layer: BaseModel) -> str:
    return next(iter(type(layer).model_fields))


def layer_dict(layer: BaseModel) -> dict[str, dict]:
    kind = layer_kind(layer)
    return {kind: getattr(layer, kind).model_dump(exclude_none=True)}


# --------------------------------------------------------------------------- sections
def _one_of(names) -> Any:
    """JSON Schema of a ``str | None`` field that takes only these names (a validator checks them)."""
    return lambda schema: schema["anyOf"][0].update(enum=sorted(names))


class DataSpec(_Strict):
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
        None, description="an imported dataset: true streams its shards (local and data_parallel modes), false reads it whole; default: stream when it is over 1 GiB as floats"
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
        None, description="images with a size: squash (ignore the aspect ratio, the default), crop (fit the short side, cut the centre) or fill (fit the long side, pad with zeros)"
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
    def _normalise_features(cls, v):
        return [_normalise_layer(item) for item in v] if isinstance(v, list) else v

    @field_validator("test_speakers", mode="before")
    @classmethod
    def _speakers(cls, v):
        if v is None or (isinstance(v, list) and all(isinstance(s, str) for s in v) and 0 < len(v) <= MAX_SPEAKERS):
            return v
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1:
            return v
        raise PydanticCustomError(
            "test_speakers", "must be a non-empty list of at most {n} speaker names or a share of the speakers in (0, 1)", {"n": MAX_SPEAKERS}
        )

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v):
        from xsharp.data.catalog import DatasetRef

        if v is not None and v not in datasets.NAMED and not DatasetRef.looks_like(v):
            raise PydanticCustomError(
                "dataset", "not a dataset name: a bundled one ({known}) or an imported one (NAME, NAME@VERSION or OWNER/NAME[@VERSION], at most 64 letters, digits, '.', '_' or '-' a part)", {"known": ", ".join(sorted(datasets.NAMED))}
            )
        return v

    @field_validator("format")
    @classmethod
    def _known_format(cls, v):
        if v is not None and v not in datasets.FORMATS:
            raise PydanticCustomError("format", "unknown format; known: {known}", {"known": ", ".join(sorted(datasets.FORMATS))})
        return v

    @model_validator(mode="after")
    def _one_source(self):
        if (self.dataset is None) == (self.path is None):
            raise PydanticCustomError("rule", "give exactly one of dataset (a name) or path (a file)")
        return self


class Resources(_Strict):
    workers: int = Field(1, ge=1, le=4096, description="worker actors: data-parallel replicas, parameter-server workers, or pipeline stages (x groups for hybrid)")
    cpus_per_worker: float = Field(1.0, gt=0, le=1024)
    gpus_per_worker: float = Field(0.0, ge=0, le=64)
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description="auto picks the GPU when CuPy sees one")


class ParallelSpec(_Strict):
    """Layout of the parameter-server, pipeline and hybrid modes, and restarts after a worker dies."""

    servers: int = Field(1, ge=1, le=1024, description="param_server: server actors, each holding a contiguous shard of the parameters")
    staleness: int | None = Field(
        None, ge=0, le=1_000_000,
        description="param_server: a step computes on weights that hold every update older than this many steps (0: as local); null: no bound",
    )
    stages: int | None = Field(None, ge=1, le=1024, description="pipeline/hybrid: model stages; default: workers (pipeline) or workers / groups (hybrid)")
    groups: int | None = Field(None, ge=1, le=1024, description="hybrid: data-parallel groups of stages; default 2")
    partition: list[Annotated[int, Field(ge=1, le=MAX_MODULES)]] | None = Field(
        None, max_length=MAX_MODULES, description="pipeline/hybrid: modules per stage, in order; default: balanced by parameter count"
    )
    micro_batches: int = Field(4, ge=1, le=4096, description="pipeline/hybrid: micro-batches per (group's share of a) batch")
    max_restarts: int = Field(0, ge=0, le=1000, description="restarts of the worker group from the last checkpoint after a worker dies (xsharp run)")
    checkpoint_every: float = Field(30.0, gt=0, le=86_400, description="seconds between checkpoints when restarts are on")
    collective: Literal["auto", "ring", "shm", "nccl"] = Field(
        "auto", description="data_parallel: allreduce transport; auto: nccl for GPU buffers, shm on one node, else the ring over Ray's object store"
    )
    overlap: bool = Field(
        False,
        description="data_parallel on the ring: send finished layers' gradients while the backward pass goes on (off by default: on one 2-core node it cost 0.69-1.03x, as the ring's copies compete with compute)",
    )
    bucket_kb: int = Field(1024, ge=1, le=1 << 20, description="data_parallel overlap: gradients sent per message, at least (KiB)")


def _job_rules(schema: dict) -> None:
    """The rules across fields that JSON Schema can say, as JobSpec's validators check them."""
    schema["properties"]["model"].update(contains=_item("softmax"), minContains=1, maxContains=1)  # _softmax_last, but for its position
    solved = [kind for kind, cls in MODULES.items() if hasattr(cls, "solve")]
    schema["allOf"] = [
        {  # _mode_fits_resources (mode's default is local)
            "if": {"properties": {"mode": {"const": "local"}}},
            "then": {"properties": {"resources": {"properties": {"workers": {"const": 1}}}}},
        },
        {  # _solves_in_this_mode
            "if": {"required": ["mode"], "properties": {"mode": {"not": {"enum": list(SOLVE_MODES)}}}},
            "then": {"properties": {"model": {"not": {"contains": {"anyOf": [_item(kind) for kind in solved]}}}}},
        },
    ]


class JobSpec(_Strict):
    """A training job."""

    model_config = ConfigDict(json_schema_extra=_job_rules)

    name: str = Field("job", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="letters, digits, . _ -")
    data: DataSpec
    model: list[ModuleLayer] = Field(min_length=1, max_length=MAX_MODULES, description="modules in order, input first; the last is softmax")
    pretrain: PretrainSpec = Field(default_factory=PretrainSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seeds the data split, initialisation and sampling")
    mode: Literal["local", "data_parallel", "param_server", "pipeline", "hybrid"] = Field("local", description="execution mode")
    resources: Resources = Field(default_factory=Resources)
    parallel: ParallelSpec = Field(default_factory=ParallelSpec)
    priority: int = Field(0, ge=-100, le=100, description="higher runs first in the job queue")

    @field_validator("model", mode="before")
    @classmethod
    def _normalise(cls, v):
        return [_normalise_layer(item) for item in v] if isinstance(v, list) else v

    @field_validator("model")
    @classmethod
    def _softmax_last(cls, v):
        kinds = [layer_kind(layer) for layer in v]
        if kinds[-1] != "softmax":
            raise PydanticCustomError("rule", "the last module must be softmax (the classifier head), got {last}", {"last": kinds[-1]})
        if "softmax" in kinds[:-1]:
            raise PydanticCustomError("rule", "softmax may only be the last module, found at model[{i}]", {"i": kinds.index("softmax")})
        return v

    @field_validator("resources")
    @classmethod
    def _mode_fits_resources(cls, v, info):
        if info.data.get("mode") == "local" and v.workers != 1:
            raise PydanticCustomError(
                "rule", "local mode runs one worker, got workers: {w}; use mode: data_parallel", {"w": v.workers}
            )
        return v

    @model_validator(mode="after")
    def _solves_in_this_mode(self):
        """A closed-form solve (elm, elm_ae) runs through the local / data-parallel engine only."""
        if self.mode in SOLVE_MODES:
            return self
        for i, layer in enumerate(self.model):
            kind = layer_kind(layer)
            if hasattr(MODULES[kind], "solve"):
                raise _rule(("mode",), self.mode, f"{kind} at model[{i}] is solved in closed form, which runs in local and data_parallel modes only, got {{v}}")
        return self

    @model_validator(mode="after")
    def _layout_fits(self):
        """Pipeline and hybrid: workers = groups x stages, every stage holds a module."""
        if self.mode not in ("pipeline", "hybrid"):
            return self
        par, workers, n = self.parallel, self.resources.workers, len(self.model)
        if self.mode == "pipeline" and par.groups not in (None, 1):
            raise _rule(("parallel", "groups"), par.groups, "pipeline runs one group, got {v}; use mode: hybrid")
        groups = self.groups
        stages = par.stages or (len(par.partition) if par.partition else max(workers // groups, 1))
        if stages * groups != workers:
            raise _rule(("resources", "workers"), workers, f"{self.mode} runs {groups} group(s) x {stages} stage(s) = {groups * stages} workers, got {{v}}")
        if stages > n:
            raise _rule(("parallel", "stages"), stages, f"a stage holds at least one module and the model has {n}, got {{v}}")
        if par.partition is not None and (len(par.partition) != stages or sum(par.partition) != n):
            raise _rule(("parallel", "partition"), par.partition, f"needs {stages} counts (one per stage) summing to {n} modules, got {{v}}")
        return self

    @property
    def groups(self) -> int:
        """Data-parallel groups of a pipeline (1 unless mode is hybrid)."""
        return (self.parallel.groups or 2) if self.mode == "hybrid" else 1

    @property
    def stages(self) -> int:
        """Pipeline stages per group (1 unless mode is pipeline or hybrid)."""
        if self.mode not in ("pipeline", "hybrid"):
            return 1
        return self.resources.workers // self.groups

    # ----------------------------------------------------------------- conveniences
    @property
    def layers(self) -> list[dict[str, dict]]:
        return [layer_dict(layer) for layer in self.model]

    def to_dict(self) -> dict:
        d = self.model_dump(mode="json", exclude_none=True)
        d["model"] = self.layers
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --------------------------------------------------------------------------- errors
def _rule(loc: tuple, value: Any, message: str) -> ValidationError:
    """A rule broken at ``loc`` (a rule that spans sections, checked once the spec is whole)."""
    error = PydanticCustomError("rule", message, {"v": _show(value)})
    return ValidationError.from_exception_data("JobSpec", [InitErrorDetails(type=error, loc=loc, input=value)])


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _path(loc: tuple) -> str:
    parts: list[str] = []
    items = list(loc)
    for i, part in enumerate(items):
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif i > 0 and part == items[i - 1] and (part in MODULES or part in STEPS):
            continue  # the union tag repeats the module name: model[1].rbm.rbm.hidden
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "spec"


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    except (TypeError, ValueError):  # e.g. a mapping whose keys YAML read as dates
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _message(err: dict) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    if kind in _BOUNDS:
        bound = next(v for k, v in ctx.items() if k in ("gt", "ge", "lt", "le"))
        return f"must be {_BOUNDS[kind]} {bound}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be an integer"
    if kind in ("float_parsing", "float_type"):
        return "must be a number"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind in ("string_type",):
        return "must be a string"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a mapping of fields"
    if kind == "list_type":
        return "must be a list"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def _suggest(loc: tuple, known: list[str]) -> str:
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"


def _known_fields(loc: tuple) -> list[str]:
    """Field names valid at the parent of ``loc`` (for 'did you mean')."""
    model: Any = JobSpec
    parents = loc[:-1]
    for i, part in enumerate(parents):
        if isinstance(part, int) or (i > 0 and part == parents[i - 1]):
            continue
        if part in MODULES and model is JobSpec:
            model = MODULES[part].Options
            continue
        if part in STEPS and model is DataSpec:
            model = STEPS[part].Options
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else model
    return list(getattr(model, "model_fields", {}))


def format_errors(error: ValidationError) -> list[str]:
    return format_error_list(error.errors())


def format_error_list(errors: list[dict]) -> list[str]:
    """One line per error, for pydantic's (or FastAPI's) error dicts."""
    problems = []
    for err in errors:
        loc = err["loc"]
        msg = _message(err)
        if err["type"] == "extra_forbidden":
            known = _known_fields(loc)
            msg += _suggest(loc, known) if known else ""
            problems.append(f"{_path(loc)}: {msg}")
        elif err["type"] in ("missing", "rule"):  # a rule's message already says what it got
            problems.append(f"{_path(loc)}: {msg}")
        else:
            problems.append(f"{_path(loc)}: {msg}, got {_show(err.get('input'))}")
    return problems


# --------------------------------------------------------------------------- loading
def parse_spec(data: Any, source: str = "spec") -> JobSpec:
    """Validate a dict (from YAML or JSON) into a JobSpec, or raise SpecError."""
    if not isinstance(data, dict):
        raise SpecError([f"spec: must be a mapping of fields, got {_show(data)}"], source)
    try:
        return JobSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_errors(e), source) from None


def load_spec(path: str | Path, overrides: dict | None = None) -> JobSpec:
    """Read a YAML job spec; ``overrides`` (dotted keys, e.g. ``resources.workers``) win over the file."""
    return parse_spec(read_spec_file(path, overrides), str(path))


def read_spec_file(path: str | Path, overrides: dict | None = None) -> Any:
    """The YAML of a spec file with ``overrides`` applied, not yet validated (a search spec
    holds ranges where a job spec holds numbers)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError([f"cannot read: {e.strerror}"], str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError([f"not valid YAML: {where}{getattr(e, 'problem', e)}"], str(path)) from None
    if isinstance(data, dict):
        data.setdefault("name", _name_from(path))
        for key, value in (overrides or {}).items():
            node = data
            *parents, leaf = key.split(".")
            for p in parents:
                if not isinstance(node.get(p), dict):
                    node[p] = {}  # the override wins over a missing or malformed section
                node = node[p]
            node[leaf] = value
    return data


def _name_from(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in path.stem).lstrip("._-")
    return stem[:64] or "job"


def json_schema() -> dict:
    return JobSpec.model_json_schema()
