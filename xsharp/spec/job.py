"""JobSpec: the whole job, and the rules that span its sections."""

from __future__ import annotations

from typing import Any, Self

import yaml
from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from xsharp.algos.modules import MODULES
from xsharp.algos.training import PretrainSpec, TrainSpec

from .data_section import DataSpec
from .errors import _rule
from .layers import MAX_MODULES, ModuleLayer, _item, _normalise_layer, layer_dict, layer_kind
from .modes import SOLVE_MODES, STAGED_MODES, Mode
from .resources import ParallelSpec, Resources
from .section import Section


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


class JobSpec(Section):
    """A training job."""

    model_config = ConfigDict(json_schema_extra=_job_rules)

    name: str = Field("job", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="letters, digits, . _ -")
    data: DataSpec
    model: list[ModuleLayer] = Field(min_length=1, max_length=MAX_MODULES, description="modules in order, input first; the last is softmax")
    pretrain: PretrainSpec = Field(default_factory=PretrainSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seeds the data split, initialisation and sampling")
    mode: Mode = Field("local", description="execution mode")
    resources: Resources = Field(default_factory=Resources)
    parallel: ParallelSpec = Field(default_factory=ParallelSpec)
    priority: int = Field(0, ge=-100, le=100, description="higher runs first in the job queue")

    @field_validator("model", mode="before")
    @classmethod
    def _normalise(cls, v: Any) -> Any:
        return [_normalise_layer(item) for item in v] if isinstance(v, list) else v

    @field_validator("model")
    @classmethod
    def _softmax_last(cls, v: list[Any]) -> list[Any]:
        kinds = [layer_kind(layer) for layer in v]
        if kinds[-1] != "softmax":
            raise PydanticCustomError("rule", "the last module must be softmax (the classifier head), got {last}", {"last": kinds[-1]})
        if "softmax" in kinds[:-1]:
            raise PydanticCustomError("rule", "softmax may only be the last module, found at model[{i}]", {"i": kinds.index("softmax")})
        return v

    @field_validator("resources")
    @classmethod
    def _mode_fits_resources(cls, v: Resources, info: ValidationInfo) -> Resources:
        if info.data.get("mode") == "local" and v.workers != 1:
            raise PydanticCustomError("rule", "local mode runs one worker, got workers: {w}; use mode: data_parallel", {"w": v.workers})
        return v

    @model_validator(mode="after")
    def _solves_in_this_mode(self) -> Self:
        """A closed-form solve (elm, elm_ae) runs through the local / data-parallel engine only."""
        if self.mode in SOLVE_MODES:
            return self
        for i, layer in enumerate(self.model):
            kind = layer_kind(layer)
            if hasattr(MODULES[kind], "solve"):
                raise _rule(("mode",), self.mode, f"{kind} at model[{i}] is solved in closed form, which runs in local and data_parallel modes only, got {{v}}")
        return self

    @model_validator(mode="after")
    def _layout_fits(self) -> Self:
        """Pipeline and hybrid: workers = groups x stages, every stage holds a module."""
        if self.mode not in STAGED_MODES:
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
        if self.mode not in STAGED_MODES:
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


def json_schema() -> dict:
    return JobSpec.model_json_schema()
