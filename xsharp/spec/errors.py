"""SpecError, what a spec that cannot run raises, and the rule errors the validators raise."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


class SpecError(ValueError):
    """A job spec that cannot run; ``problems`` holds one message per bad field."""

    def __init__(self, problems: list[str], source: str = "spec"):
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(problems))

    def __reduce__(self) -> tuple[type[SpecError], tuple[list[str], str]]:  # a runner's SpecError reaches the scheduler pickled: keep it whole
        return (SpecError, (self.problems, self.source))


def _rule(loc: tuple, value: Any, message: str) -> ValidationError:
    """A rule broken at ``loc`` (a rule that spans sections, checked once the spec is whole)."""
    error = PydanticCustomError("rule", message, {"v": _show(value)})
    return ValidationError.from_exception_data("JobSpec", [InitErrorDetails(type=error, loc=loc, input=value)])


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    except (TypeError, ValueError):  # e.g. a mapping whose keys YAML read as dates
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
