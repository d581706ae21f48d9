"""The grammar of a search spec: which values of a job spec are searched, and how.

Any numeric option of a job spec can be a fixed value, a range with a step
(``{range: [0.01, 0.1], step: 0.03}``), a list (``{grid: [64, 128]}``) or ``auto`` (a prior chosen
from the option's name: log-uniform for learning rates, and so on). A spec with any non-fixed
value is a search; its ``search:`` section picks the strategy:

    search: {strategy: grid | random | asha, samples: 16, max_parallel: 2, reduction_factor: 3}

Resources, the mode and the data sources cannot be searched. This module reads and checks the
spec's text only (no Ray, no training), so the CLI, the API and the console parse a search with
it; counting and running the trials is :mod:`xsharp.cluster.search`'s.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from xsharp.spec import SpecError, _show, format_errors

# option name -> (low, high, log scale, integer) for `auto`
AUTO_PRIORS: dict[str, tuple[float, float, bool, bool]] = {
    "learning_rate": (1e-3, 0.5, True, False),
    "momentum": (0.5, 0.95, False, False),
    "weight_decay": (1e-6, 1e-2, True, False),
    "hidden": (16, 512, True, True),
    "units": (16, 512, True, True),
    "filters": (4, 64, True, True),
    "epochs": (5, 100, False, True),
    "batch_size": (16, 256, True, True),
    "k": (1, 5, False, True),
    "corruption": (0.0, 0.5, False, False),
    "rate": (0.0, 0.5, False, False),
    "sparsity_target": (0.01, 0.2, True, False),
    "l1_weight": (1e-3, 1.0, True, False),
}
AUTO_GRID_POINTS = 4
MAX_DEPTH = 64  # levels of nesting in a spec (a real one has under 10); deeper is refused before any walk recurses
DATA_SOURCES = {("data", "dataset"), ("data", "path"), ("data", "labels")}  # what a job reads: a search's server checks it once, for every trial


class SearchSettings(BaseModel):
    """How to search. Everything has a default, so a spec with ranges alone is a grid search."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    strategy: Literal["grid", "random", "asha"] = Field("grid", description="grid: every combination; random and asha: `samples` draws")
    samples: int = Field(
        16,
        ge=1,
        le=100_000,
        description=(
            "trials drawn by random and asha. A space of grids, ranges with a step and integer ranges is finite: it is drawn"
            " from without replacement, so no combination runs twice, and samples past its size is refused; unset, samples is"
            " at most the number of combinations (asha over grids alone, unless set: every combination). A float range is"
            " drawn from freely."
        ),
    )
    max_parallel: int | None = Field(None, ge=1, le=4096, description="trials at once; default: as many as the cluster holds")
    reduction_factor: int = Field(3, ge=2, le=16, description="asha: keep the top 1/reduction_factor at each rung")
    min_epochs: int = Field(1, ge=1, description="asha: the first rung, in fine-tuning epochs")
    seed: int = Field(0, ge=0, description="seeds the random draws")
    folds: int | None = Field(
        None, ge=2, le=20, description="k-fold cross-validation per trial on the training rows; the best is chosen by mean fold accuracy and refit"
    )

    @model_validator(mode="after")
    def _folds_without_asha(self):
        if self.folds and self.strategy == "asha":
            raise PydanticCustomError("rule", "folds: cross-validation runs every fold to the end; use grid or random with folds")
        return self


@dataclass
class Param:
    path: tuple  # keys and list indices into the spec
    name: str  # model[0].rbm.hidden
    values: list | None = None  # a grid given as a list
    low: float | None = None
    high: float | None = None
    step: float | None = None  # a range with a step is the grid low, low + step, ... up to high
    log: bool = False
    integer: bool = False

    @property
    def listed(self) -> bool:
        """A grid (a list, or a range with a step) rather than a continuous range."""
        return self.values is not None or self.step is not None

    def size(self) -> int | float:
        """How many values a grid search takes, counted without building them (inf past a float's reach)."""
        if self.values is not None:
            return len(self.values)
        if self.step is not None:
            try:
                span = (self.high - self.low) / self.step
            except OverflowError:  # int / int past a float's range
                return math.inf
            return math.floor(span + 1e-9) + 1 if math.isfinite(span) else math.inf
        return len(self.grid())

    def value(self, i: int) -> Any:
        """The i-th value of a range with a step."""
        v = self.low + i * self.step
        return int(v) if self.integer else round(float(v), 12)

    def first(self) -> Any:
        """The value the base spec holds: a grid's first, a range's low end."""
        if self.values is not None:
            return self.values[0]
        if self.step is not None:
            return self.value(0)
        return int(self.low) if self.integer else self.low

    def grid(self) -> list:
        if self.values is not None:
            return list(self.values)
        if self.step is not None:
            return [self.value(i) for i in range(self.size())]
        if self.log:
            pts = np.geomspace(self.low, self.high, AUTO_GRID_POINTS)
        else:
            pts = np.linspace(self.low, self.high, AUTO_GRID_POINTS)
        return sorted({int(round(p)) for p in pts}) if self.integer else [float(p) for p in pts]

    def distinct(self) -> int | float:
        """How many values a random draw can give: a grid's, an integer range's every integer
        (low..high), inf for a continuous range of floats."""
        if self.listed:
            return self.size()
        return int(self.high) - int(self.low) + 1 if self.integer else math.inf

    def at(self, i: int) -> Any:
        """The i-th of the :meth:`distinct` values (a range's in increasing order)."""
        if self.values is not None:
            return self.values[i]
        if self.step is not None:
            return self.value(i)
        return int(self.low) + i  # an integer range

    def draw(self, rng: np.random.Generator) -> tuple[int | None, Any]:
        """One random value and its index among the :meth:`distinct` ones (None: a float range's)."""
        if self.values is not None:
            i = int(rng.integers(len(self.values)))
            return i, self.values[i]
        if self.step is not None:
            i = int(rng.integers(self.size()))
            return i, self.value(i)
        if self.integer and not self.log:  # exact for any size: a float draw reaches only some integers past 2**53
            i = int(rng.integers(int(self.high) - int(self.low) + 1))
            return i, int(self.low) + i
        u = rng.random()
        v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))) if self.log else self.low + u * (self.high - self.low)
        if self.integer:
            v = int(round(v))
            return v - int(self.low), v
        return None, float(v)

    def sample(self, rng: np.random.Generator) -> Any:
        return self.draw(rng)[1]


def path_name(path: tuple) -> str:
    """A field's path as errors name it: ("model", 0, "rbm", "hidden") -> model[0].rbm.hidden."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def is_number(v: Any) -> bool:
    """A finite int or float that fits a float (JSON allows NaN, Infinity and 400-digit integers)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= sys.float_info.max


def _param(path: tuple, value: Any) -> Param | None:
    """A search parameter if ``value`` is one; SpecError if it is a malformed one. Nothing is
    listed here: a range's values are counted (:meth:`Param.size`) before any is built."""
    name = path_name(path)
    if value == "auto":
        key = next((p for p in reversed(path) if isinstance(p, str)), "")
        if key not in AUTO_PRIORS:
            return None  # an ordinary value (resources.device: auto); the spec's own validation judges it
        low, high, log, integer = AUTO_PRIORS[key]
        return Param(path, name, low=low, high=high, log=log, integer=integer)
    if not isinstance(value, dict):
        return None
    if set(value) == {"grid"}:
        grid = value["grid"]
        if not isinstance(grid, list) or not grid:
            raise SpecError([f"{name}.grid: must be a non-empty list, got {_show(grid)}"])
        return Param(path, name, values=grid)
    if "range" in value and set(value) <= {"range", "step", "log"}:
        r = value["range"]
        if not (isinstance(r, list) and len(r) == 2 and all(is_number(v) for v in r) and r[0] < r[1]):
            raise SpecError([f"{name}.range: must be [low, high] numbers with low < high, got {_show(r)}"])
        log = bool(value.get("log", False))
        if log and r[0] <= 0:
            raise SpecError([f"{name}.range: a log range needs low > 0, got {_show(r)}"])
        integer = all(isinstance(v, int) for v in r) and isinstance(value.get("step", 1), int)
        step = value.get("step")
        if step is not None and not (is_number(step) and step > 0):
            raise SpecError([f"{name}.step: must be > 0, got {_show(step)}"])
        return Param(path, name, low=r[0], high=r[1], step=step, log=log, integer=integer)
    return None


def _fixed(path: tuple) -> str | None:
    """Why the field at ``path`` may not be searched: a search's trials share one reservation (its
    resources, local mode) and one check of the data they read (its base spec's data section)."""
    if path[0] == "resources":
        return "resources cannot be searched"
    if path[0] == "mode":
        return "the execution mode cannot be searched; a search job runs its trials in one mode"
    if path == ("data",) or path[:2] in DATA_SOURCES:
        return "data sources cannot be searched"
    return None


def _check_depth(node: Any, path: tuple = ()) -> None:
    """SpecError if ``node`` nests deeper than MAX_DEPTH levels. The recursion stops there, so a
    hostile body overflows neither this walk nor the ones after it."""
    if not isinstance(node, (dict, list)):
        return
    if len(path) >= MAX_DEPTH:
        where = path_name(path)
        raise SpecError([f"{where if len(where) <= 120 else where[:117] + '...'}: nested deeper than {MAX_DEPTH} levels"])
    for key, child in node.items() if isinstance(node, dict) else enumerate(node):
        _check_depth(child, path + (key,))


def split_space(raw: dict) -> tuple[dict, list[Param]]:
    """The spec without its search values (the first grid value or the low end in their place),
    and the search parameters in document order."""
    _check_depth(raw)
    params: list[Param] = []

    def walk(node: Any, path: tuple) -> Any:
        p = _param(path, node) if path else None
        if p is not None:
            params.append(p)
            return p.first()
        if isinstance(node, dict):
            return {k: walk(v, path + (k,)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, path + (i,)) for i, v in enumerate(node)]
        return node

    base = walk({k: v for k, v in raw.items() if k != "search"}, ())
    for p in params:
        why = _fixed(p.path)
        if why:
            raise SpecError([f"{p.name}: {why}"])
    return base, params


def is_search(raw: Any) -> bool:
    if not isinstance(raw, dict):
        return False
    if "search" in raw:
        return True
    return bool(split_space(raw)[1])


def settings_of(raw: dict) -> SearchSettings:
    try:
        return SearchSettings.model_validate(raw.get("search") or {})
    except ValidationError as e:
        raise SpecError([f"search.{p}" for p in format_errors(e)]) from None
