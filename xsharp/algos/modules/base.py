"""The one Module interface every layer follows.

Modules are functional: parameters live outside the code as a dict of arrays, so a model's
parameters can be one flat buffer, and any list of modules stacks into a model.

    init(rng, in_shape)                 -> params            (host NumPy arrays)
    param_shapes(in_shape)              -> {name: shape} of those params, nothing allocated
    output_shape(in_shape)              -> shape of one output sample
    forward(params, x, train, rng)      -> (y, cache)
    backward(params, cache, dy)         -> (grads, dx)
    pretrain_step(params, x, rng)       -> (grads, reconstruction_error)   # unsupervised only
    statistics(params, x, labels)       -> flat sums over the rows         # closed-form (ELM) only:
    solve(params, summed_statistics)    -> (solved params, error)          #   see algos.training

Gradients are of the *mean* loss over the batch, ready for an optimiser to descend.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

# The most units, filters, atoms or classes one module may have: a bound on what one option can
# ask for, not a memory budget (a server caps the whole model's parameters).
MAX_UNITS = 65536


def _members(annotation: Any) -> list[Any]:
    """The types a field takes: the members of a union, Annotated metadata dropped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _members(a)]
    return [annotation]


_MEMBERS: dict[tuple[type, str], list[Any]] = {}


def _field_members(cls: type, name: str) -> list[Any]:
    """``_members`` of a field's annotation, worked out once per field (it runs for every value)."""
    key = (cls, name)
    if key not in _MEMBERS:
        _MEMBERS[key] = _members(cls.model_fields[name].annotation)
    return _MEMBERS[key]


def _whole(value: Any, members: list[Any]) -> Any:
    """``value`` with whole floats made ints where ``members`` (a field's types) hold an int (lists too)."""
    if isinstance(value, float) and value.is_integer() and int in members:
        return int(value)
    items = [get_args(m)[0] for m in members if get_origin(m) is list]
    if isinstance(value, list) and items:
        inner = _members(items[0])
        return [_whole(v, inner) for v in value]
    return value


class SpecModel(BaseModel):
    """A part of a job spec. Strict: unknown fields, and a bool or a string where a number goes
    (``priority: true``, ``units: "5"``), are errors rather than quietly converted."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _whole_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # JSON has one kind of number (JSON Schema's "integer" admits 3.0): a whole float is an int.
        if not isinstance(value, (float, list)):  # most values: nothing to look up
            return value
        return _whole(value, _field_members(cls, info.field_name))


class Options(SpecModel):
    """A module's options, as written in a job spec under its name."""


class Module:
    kind: ClassVar[str]
    summary: ClassVar[str]
    Options: ClassVar[type[Options]] = Options

    def __init__(self, options: Options | dict | None = None):
        if isinstance(options, Options):
            self.options = options
        else:
            self.options = self.Options.model_validate(options or {})

    @property
    def pretrainable(self) -> bool:
        return hasattr(self, "pretrain_step")

    @property
    def solvable(self) -> bool:
        """Trained by a closed-form solve over summed statistics (a solve phase), not by steps."""
        return hasattr(self, "solve")

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError

    def param_shapes(self, in_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The shapes of what :meth:`init` returns, in its order, from the options alone."""
        raise NotImplementedError

    def init(self, rng: np.random.Generator, in_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def forward(self, params: dict, x: Any, train: bool = False, rng: Any = None) -> tuple[Any, Any]:
        raise NotImplementedError

    def backward(self, params: dict, cache: Any, dy: Any) -> tuple[dict, Any]:
        raise NotImplementedError

    def backward_params(self, params: dict, cache: Any, dy: Any) -> dict:
        """The parameters' gradients alone, for the first module of a stack (its input needs no
        gradient); modules whose dx costs a product override it to skip that product."""
        return self.backward(params, cache, dy)[0]

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.model_dump().items())
        return f"{self.kind}({opts})"


def flat_size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)
