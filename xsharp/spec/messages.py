"""A bad spec's problems for people: one line each, the field path, the value, the bound."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from xsharp.algos.features import STEPS
from xsharp.algos.modules import MODULES

from .data_section import DataSpec
from .errors import _show
from .job import JobSpec

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


def _message(err: Mapping[str, Any]) -> str:
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


def format_error_list(errors: Sequence[Mapping[str, Any]]) -> list[str]:
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
