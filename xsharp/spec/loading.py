"""Reading a job spec: from a dict (YAML or JSON) or a YAML file, into a JobSpec or a SpecError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import SpecError, _show
from .job import JobSpec
from .messages import format_errors


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
