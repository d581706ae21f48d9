"""JobSpec: what to train, on which data, how, with what resources. Validated once, the same
schema for YAML files, REST JSON and CLI flags.

A bad spec raises :class:`SpecError` with one line per problem, each naming the field path
and the value: ``model[1].rbm.hidden: must be > 0, got -3``.
"""

from __future__ import annotations

from xsharp.algos.training import PhaseSpec, PretrainSpec, ScheduleSpec, TrainSpec

from .data_section import MAX_SPEAKERS, MAX_STEPS, DataSpec
from .errors import SpecError
from .errors import _show as _show  # cluster/search.py quotes values as spec errors do
from .job import JobSpec, json_schema
from .layers import MAX_MODULES, FeatureStep, ModuleLayer, layer_dict, layer_kind
from .loading import load_spec, parse_spec, read_spec_file
from .messages import format_error_list, format_errors
from .modes import MODES, SOLVE_MODES, STAGED_MODES, Mode
from .resources import ParallelSpec, Resources

__all__ = [
    "JobSpec",
    "DataSpec",
    "PhaseSpec",
    "PretrainSpec",
    "ScheduleSpec",
    "TrainSpec",
    "Resources",
    "ParallelSpec",
    "SpecError",
    "load_spec",
    "parse_spec",
    "MODES",
    "SOLVE_MODES",
    "STAGED_MODES",
    "Mode",
    "MAX_MODULES",
    "MAX_SPEAKERS",
    "MAX_STEPS",
    "FeatureStep",
    "ModuleLayer",
    "format_error_list",
    "format_errors",
    "json_schema",
    "layer_dict",
    "layer_kind",
    "read_spec_file",
]
