"""Parallel hyper-parameter search.

Any numeric option of a job spec can be a fixed value, a range with a step
(``{range: [0.01, 0.1], step: 0.03}``), a list (``{grid: [64, 128]}``) or ``auto`` (a prior chosen
from the option's name: log-uniform for learning rates, and so on). A spec with any non-fixed
value is a search; its ``search:`` section picks the strategy:

    search: {strategy: grid | random | asha, samples: 16, max_parallel: 2, reduction_factor: 3}

A search is counted before it is built (values per range, trials in all) and refused past a
cap, the server's ``max_trials``; resources, the mode and the data sources cannot be searched.
Trials are ordinary job specs, validated like any other, and run in parallel *slots*: each
slot reserves one trial's resources (a gang placement group) and keeps one ``JobRunner`` actor
that trains trial after trial, in any execution mode. ASHA (asynchronous successive halving, as
in Li et al. 2018 and Ray Tune's stopping variant) stops a trial at a rung (epochs r, r*eta,
r*eta^2 ...) when its validation accuracy is below the top 1/eta of those recorded there. A
failed trial is recorded, not fatal. Results go to ``search.json`` after every trial, so a
rerun with the same output folder never reruns a finished trial.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from xsharp.spec import JobSpec, SpecError, _show, format_errors, parse_spec

from .policy import Policy, public_reason

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
POLL_SECONDS = 0.25  # a running trial's events reach the search at least this often (rungs and ends at once)


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
    folds: int | None = Field(None, ge=2, le=20, description="k-fold cross-validation per trial on the training rows; the best is chosen by mean fold accuracy and refit")

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


def _name(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _number(v: Any) -> bool:
    """A finite int or float that fits a float (JSON allows NaN, Infinity and 400-digit integers)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= sys.float_info.max


def _param(path: tuple, value: Any) -> Param | None:
    """A search parameter if ``value`` is one; SpecError if it is a malformed one. Nothing is
    listed here: a range's values are counted (:meth:`Param.size`) before any is built."""
    name = _name(path)
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
        if not (isinstance(r, list) and len(r) == 2 and all(_number(v) for v in r) and r[0] < r[1]):
            raise SpecError([f"{name}.range: must be [low, high] numbers with low < high, got {_show(r)}"])
        log = bool(value.get("log", False))
        if log and r[0] <= 0:
            raise SpecError([f"{name}.range: a log range needs low > 0, got {_show(r)}"])
        integer = all(isinstance(v, int) for v in r) and isinstance(value.get("step", 1), int)
        step = value.get("step")
        if step is not None and not (_number(step) and step > 0):
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
        where = _name(path)
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


def _with(base: dict, params: list[Param], values: tuple) -> dict:
    """``base`` with each parameter's value in place: the dicts and lists on the way are copied,
    the rest shared (validation reads a spec, never changes it)."""
    spec = dict(base)
    copied = {id(spec)}
    for p, v in zip(params, values):
        node = spec
        for key in p.path[:-1]:
            if id(node[key]) not in copied:
                node[key] = copy.copy(node[key])
                copied.add(id(node[key]))
            node = node[key]
        node[p.path[-1]] = v
    return spec


class _Grid(Sequence):
    """Every combination of ``grids`` in itertools.product's order (the last varies fastest): the
    i-th is computed when asked for, none is stored."""

    def __init__(self, grids: list[list]):
        self.grids = grids
        self.n = math.prod(len(g) for g in grids)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple:
        i = range(self.n)[i]
        out = []
        for g in reversed(self.grids):
            i, j = divmod(i, len(g))
            out.append(g[j])
        return tuple(reversed(out))


class TrialSpecs(Sequence):
    """A search's trials, built when asked for: ``trials[i]`` is (trial i's values by name, its
    validated JobSpec, named ``{name}-t{i}``). Only the values are held, never the specs."""

    def __init__(self, base: dict, params: list[Param], combos: Sequence[tuple]):
        self.base, self.params, self.combos = base, params, combos

    def __len__(self) -> int:
        return len(self.combos)

    def __getitem__(self, i: int) -> tuple[dict, JobSpec]:
        return self.values(i), self.spec(i)

    def values(self, i: int) -> dict:
        return {p.name: v for p, v in zip(self.params, self.combos[i])}

    def spec(self, i: int) -> JobSpec:
        i = range(len(self))[i]
        combo = self.combos[i]
        try:
            spec = parse_spec(_with(self.base, self.params, combo), f"trial {i}")
        except SpecError as e:
            raise SpecError([f"trial {i} ({', '.join(f'{p.name}={v}' for p, v in zip(self.params, combo))}): {m}" for m in e.problems]) from None
        return spec.model_copy(update={"name": f"{spec.name}-t{i}"})


@dataclass(frozen=True)
class SearchSpace:
    """A search resolved into what its trials share and what each one takes; no trial built."""

    settings: SearchSettings
    base: dict  # the spec with each parameter's first value
    params: list[Param]
    trials: TrialSpecs


def search_space(raw: dict, max_trials: int | None = Policy.max_trials) -> SearchSpace:
    """The search ``raw`` with its size counted before any value list or trial is built: SpecError
    for a range, a grid or a search with more than ``max_trials`` values or trials (None: no
    cap, for a search the server has admitted). Trials are validated as they are built."""
    base, params = split_space(raw)
    settings = settings_of(raw)
    cap = math.inf if max_trials is None else max_trials
    for p in params:
        n = p.size()
        if p.listed and n > cap:  # a list, or a range a random draw picks from by index
            what = f"range: {n if n < math.inf else 'over 1e308'} values at step {p.step}" if p.step is not None else f"grid: {n} values"
            raise SpecError([f"{p.name}.{what}, over the cap of {max_trials}"])
    every = settings.strategy == "grid" or (settings.strategy == "asha" and all(p.listed for p in params) and "samples" not in settings.model_fields_set)
    if every:  # asha over grids alone: every combination
        n = math.prod(p.size() for p in params)
    else:
        space = math.prod(p.distinct() for p in params)  # inf once a float range is drawn from
        if "samples" in settings.model_fields_set and settings.samples > space:
            raise SpecError([too_many_samples(settings, params, space)])
        n = min(settings.samples, space)  # the default: at most every combination, each once
    if n > cap:
        raise SpecError([f"search: {n} trials, over this server's cap of {max_trials}"])
    if every:
        combos: Sequence[tuple] = _Grid([p.grid() for p in params])
    else:
        combos = draws(params, n, settings.seed)
    return SearchSpace(settings, base, params, TrialSpecs(base, params, combos))


def too_many_samples(settings: SearchSettings, params: list[Param], space: int) -> str:
    """Why ``settings.samples`` draws cannot be taken from a finite space of ``space`` combinations."""
    sizes = ", ".join(f"{p.name}: {p.distinct()} value{'s' if p.distinct() != 1 else ''}" for p in params)
    return (
        f"search.samples: {settings.samples} trials asked for, but this search space has only {space} distinct "
        f"combination{'s' if space != 1 else ''} ({sizes}) and {settings.strategy} search never repeats one: "
        f"set samples to {space} or fewer, leave it out to run each combination once, or use strategy: grid"
    )


def draws(params: list[Param], n: int, seed: int) -> list[tuple]:
    """``n`` random combinations of ``params``, the same for the same seed. A space with a float
    range is drawn from with replacement (a repeat has probability zero); a finite one (grids,
    ranges with a step, integer ranges) without: no combination twice, so ``n`` is at most its
    size. Each value is drawn from its parameter's prior (log-uniform for a log range) and a
    repeated combination drawn again; a draw of a quarter of the space or more is a uniform
    shuffle of every combination instead, which never has to retry."""
    rng = np.random.default_rng(seed)
    space = math.prod(p.distinct() for p in params)
    if space == math.inf:
        return [tuple(p.sample(rng) for p in params) for _ in range(n)]
    every = _Grid([range(int(p.distinct())) for p in params])  # combinations as index tuples, none built
    if 4 * n >= space:  # space <= 400,000 (samples is at most 100,000)
        picked = [every[int(i)] for i in rng.permutation(space)[:n]]
    else:
        seen: set[tuple] = set()
        picked = []
        tries = 0
        while len(picked) < n:
            key = tuple(p.draw(rng)[0] for p in params)
            tries += 1
            if key not in seen:
                seen.add(key)
                picked.append(key)
            elif tries > n + 10_000:  # a prior whose draws keep repeating (a log range's few reachable values): the rest from a random place on
                start = int(rng.integers(min(space, 2**62)))
                rest = (c for c in (every[(start + j) % space] for j in range(space)) if c not in seen)
                picked += [next(rest) for _ in range(n - len(picked))]
    return [tuple(p.at(i) for p, i in zip(params, key)) for key in picked]


def trial_specs(raw: dict, max_trials: int | None = Policy.max_trials) -> tuple[SearchSettings, list[Param], TrialSpecs]:
    """The search's settings, parameters and trials, every trial validated here (errors in fixed
    fields name the field, as for any job; in a trial, the trial and its values). Each trial is
    validated whole, as rules that span fields (an autoencoder's sparsity and activation, a
    pipeline's stages and modules) can fail on a combination of values that each pass alone,
    and random draws give every trial values of its own. None is kept: memory stays flat, and
    the time, about 0.1 ms a trial, is bounded by the cap."""
    space = search_space(raw, max_trials)
    parse_spec(space.base, "search base")
    for i in range(len(space.trials)):
        space.trials.spec(i)
    return space.settings, space.params, space.trials


# --------------------------------------------------------------------------- running
@dataclass
class Trial:
    id: int
    params: dict
    state: str = "PENDING"  # PENDING RUNNING SUCCEEDED STOPPED (early) FAILED
    metric: float | None = None  # validation accuracy at the last epoch run
    test_accuracy: float | None = None
    epochs: int = 0  # fine-tuning epochs run
    seconds: float = 0.0
    error: str | None = None
    curve: list = field(default_factory=list)  # validation accuracy per epoch
    fold_metrics: list = field(default_factory=list)  # with folds: validation accuracy of each finished fold


class ASHA:
    """Rungs at min_epochs * eta^k; a trial continues past a rung only in the top 1/eta there."""

    def __init__(self, max_epochs: int, reduction_factor: int, min_epochs: int):
        self.eta = reduction_factor
        self.rungs: dict[int, list[float]] = {}
        r = min_epochs
        while r < max_epochs:
            self.rungs[r] = []
            r *= reduction_factor

    def keep(self, epoch: int, metric: float) -> bool:
        if epoch not in self.rungs:
            return True
        seen = self.rungs[epoch]
        seen.append(metric)
        if len(seen) < self.eta:
            return True  # too few to judge
        return metric >= float(np.percentile(seen, 100 * (1 - 1 / self.eta)))


@dataclass
class SearchResult:
    trials: list[Trial]
    params: list[str]
    best: Trial | None
    seconds: float
    trial_epochs: int

    def table(self) -> list[dict]:
        return [asdict(t) | {"curve": None} for t in self.trials]


class _Slot:
    """Room for one trial at a time: its own reservation, or bundle ``bundle`` of the search
    job's reservation ``pg`` (local-mode trials), and one runner that trains trial after trial."""

    def __init__(self, spec: JobSpec, pg=None, bundle: int = 0, policy: Policy | None = None):
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from xsharp.parallel.group import bundles

        from .jobrunner import JobRunner

        res = spec.resources
        self.spec, self.bundle, self.policy = spec, bundle, policy
        self.local = spec.mode == "local"
        self.owns_pg = pg is None
        if pg is None:
            pg = placement_group(bundles(res.workers, res.cpus_per_worker, res.gpus_per_worker), strategy="PACK")
            ray.get(pg.ready())
            bundle = self.bundle = 0
        self.pg = pg
        self.runner = JobRunner.options(
            num_cpus=res.cpus_per_worker if self.local else 0,
            num_gpus=res.gpus_per_worker if self.local else 0,
            max_concurrency=4,
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=bundle),
        ).remote(policy)
        self.trial: Trial | None = None
        self.fold: int | None = None
        self.run_id = 0  # one per trial run on this slot's runner
        self.keep: dict[int, bool] = {}  # rung epoch -> asha's verdict for the running trial
        self.ref = None
        self.poll = None  # the outstanding poll of the runner's events
        self.started = 0.0
        self.stop_sent = False

    def close(self) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        ray.kill(self.runner, no_restart=True)
        if self.owns_pg:
            remove_placement_group(self.pg)


def cv_fold(data, fold: int, folds: int, seed: int):
    """The data set with fold ``fold`` of ``folds`` (stratified) of its training and validation
    rows as the validation rows, and the rest for training; the test rows are untouched."""
    import dataclasses

    from sklearn.model_selection import StratifiedKFold

    from xsharp.fileguard import DataError

    if data.x_train is None:
        raise DataError("search.folds: cross-validation reshuffles the training rows, which needs them in memory; set data.stream: false")

    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    train, val = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))[fold]
    return dataclasses.replace(data, x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val])


def slots_for(settings: SearchSettings, trials: TrialSpecs, cpus: float, gpus: float) -> int:
    """How many trials at once fit ``cpus`` and ``gpus`` (at least one; no more than there are trials)."""
    res = trials.spec(0).resources  # resources cannot be searched: every trial's
    need_cpu, need_gpu = res.workers * res.cpus_per_worker, res.workers * res.gpus_per_worker
    fit = min(cpus // need_cpu if need_cpu else len(trials), gpus // need_gpu if need_gpu else len(trials))
    return int(max(1, min(settings.max_parallel or fit, fit, len(trials))))


def run_search(
    raw: dict,
    out_dir: Path | None = None,
    on_update: Callable[[list[Trial]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    placement_group=None,
    on_best: Callable[[Path], None] | None = None,
    max_trials: int | None = Policy.max_trials,
    policy: Policy | None = None,
) -> SearchResult:
    """Run every trial of the search ``raw`` on the connected Ray cluster; with
    ``placement_group`` (a search job's reservation, one bundle per slot) inside it.

    With ``out_dir``, a rerun keeps the finished trials of ``out_dir/search.json`` and the best
    model so far in ``out_dir/best``; ``on_best(out_dir / "best")`` follows each new best model,
    so a caller can keep it safe before the search ends. Each trial's JobSpec is built when it
    starts; ``max_trials`` as in :func:`search_space`. ``policy``: a search job of the service,
    whose trials read, allocate and size their models under the server's rules."""
    import ray

    from xsharp.algos import Model

    from .runner import write_artifacts

    settings, params, specs = trial_specs(raw, max_trials)
    trials = [Trial(i, specs.values(i)) for i in range(len(specs))]
    done_file = out_dir / "search.json" if out_dir else None
    if done_file is not None and done_file.exists():  # a rerun: finished trials are never rerun
        previous = {json.dumps(t["params"], sort_keys=True): t for t in json.loads(done_file.read_text())["trials"]}
        for t in trials:
            old = previous.get(json.dumps(t.params, sort_keys=True))
            if old and old["state"] in ("SUCCEEDED", "STOPPED", "FAILED"):
                trials[t.id] = Trial(**(old | {"id": t.id}))
    first = specs.spec(0)
    asha = ASHA(first.train.epochs, settings.reduction_factor, settings.min_epochs) if settings.strategy == "asha" else None
    if asha is not None:
        for t in trials:  # rung results of finished trials still count
            for epoch, metric in enumerate(t.curve, 1):
                if epoch in asha.rungs:
                    asha.rungs[epoch].append(metric)
    if placement_group is not None:
        n_slots = len(placement_group.bundle_specs)
    else:
        total = ray.cluster_resources()
        n_slots = slots_for(settings, specs, total.get("CPU", 0.0), total.get("GPU", 0.0))
    rank = lambda t: (t.metric, -t.id)  # noqa: E731  the best trial: highest metric, then the earliest
    best_key = max((rank(t) for t in trials if t.state == "SUCCEEDED" and t.metric is not None), default=(-1.0, 0))
    kept = out_dir / "best" / "metrics.json" if out_dir is not None else None
    if kept is not None and kept.exists():  # a best model from before: kept only if the table backs it
        top = max((t for t in trials if t.state == "SUCCEEDED" and t.metric is not None), key=rank, default=None)
        if top is None or json.loads(kept.read_text()).get("trial") != top.id:  # saved just before a crash, its trial not yet in the table
            import shutil

            shutil.rmtree(kept.parent)
    t0 = time.time()
    k = settings.folds
    for t in trials:
        if t.state != "SUCCEEDED":
            t.fold_metrics = []  # a trial cut short re-runs all of its folds
    pending = [(t, f) for t in trials if t.state == "PENDING" for f in (range(k) if k else [None])]
    slots = [_Slot(first, placement_group, i, policy) for i in range(min(n_slots, len(pending)))]
    try:
        while pending or any(s.trial for s in slots):
            for s in slots:
                while s.trial is None and pending:
                    t, fold = pending.pop(0)
                    if t.state == "FAILED":
                        continue  # another fold of it failed
                    spec = specs.spec(t.id)
                    s.trial, s.fold, s.started, s.stop_sent = t, fold, time.time(), False
                    gates = sorted(asha.rungs) if asha is not None else ()
                    s.run_id += 1
                    s.ref = s.runner.run.remote(spec.to_dict(), None, 3600.0, None if s.local else s.pg, gates, (fold, k) if k else None, s.run_id)
                    s.keep = {}
                    t.state = "RUNNING"
            for s in slots:
                if s.trial is not None and s.poll is None:  # returns early at a rung or the trial's end
                    s.poll = s.runner.poll.remote(POLL_SECONDS, s.run_id)
            busy = [s for s in slots if s.trial]
            ready = set(ray.wait([s.ref for s in busy] + [s.poll for s in busy], num_returns=1, timeout=POLL_SECONDS)[0])
            for s in slots:
                if s.trial is None:
                    continue
                t = s.trial
                if s.fold is None:
                    t.seconds = time.time() - s.started  # live tables show a running trial's time so far
                events = []
                if s.poll in ready or s.ref in ready:
                    try:
                        events = ray.get(s.poll)
                        if s.ref in ready:  # whatever the trial said after that poll
                            events += ray.get(s.runner.poll.remote())
                    except ray.exceptions.RayActorError:
                        pass  # the runner died: its trial's ref says so below
                    s.poll = None
                for kind, item in events:
                    if s.fold is not None:
                        continue  # a fold counts when it ends
                    if kind == "progress" and item["phase"] == "finetune" and item["epoch_end"] and item["val_accuracy"] is not None:
                        t.epochs, t.metric = item["epoch"], item["val_accuracy"]
                        t.curve.append(item["val_accuracy"])
                        if asha is not None and not s.stop_sent:
                            s.keep[item["epoch"]] = asha.keep(item["epoch"], item["val_accuracy"])
                            if not s.keep[item["epoch"]]:
                                s.runner.request_stop.remote(s.run_id)
                                s.stop_sent = True
                    elif kind == "gate":  # a local trial waits at its rung for our answer
                        s.runner.decide.remote(s.keep.get(item, True) and not s.stop_sent, s.run_id)
                if s.ref in ready:
                    t.seconds = (t.seconds if s.fold else 0.0) + time.time() - s.started
                    try:
                        outcome = ray.get(s.ref)
                    except Exception as e:  # a failed trial is recorded, not fatal
                        cause = getattr(e, "cause", None) or e
                        t.state, t.error = "FAILED", public_reason(cause) if policy is not None else f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
                        if isinstance(e, ray.exceptions.RayActorError):  # the runner died: give the slot a new one
                            s.close()
                            s.__init__(specs.spec(t.id), None if s.owns_pg else s.pg, s.bundle, s.policy)
                    else:
                        if outcome[0] == "stopped":
                            t.state = "STOPPED"
                        elif s.fold is not None:
                            metrics = outcome[3]
                            t.fold_metrics.append(metrics["val_accuracy"])
                            t.epochs += len(metrics["finetune"])
                            if len(t.fold_metrics) == k and t.state != "FAILED":
                                t.state, t.metric = "SUCCEEDED", float(np.mean(t.fold_metrics))
                        else:
                            _, flat, meta, metrics = outcome
                            t.state, t.test_accuracy = "SUCCEEDED", metrics["test_accuracy"]
                            t.metric = metrics["val_accuracy"] if metrics["val_accuracy"] is not None else t.metric
                            t.epochs = len(metrics["finetune"])
                            if out_dir is not None and t.metric is not None and rank(t) > best_key and not k:
                                best_key = rank(t)
                                spec = specs.spec(t.id)
                                model = Model(spec.layers, tuple(meta["in_shape"]), meta["n_classes"], seed=spec.seed, classes=meta["classes"])
                                model.set_flat(flat)
                                model.pipeline = meta.get("pipeline")
                                write_artifacts(out_dir / "best", spec, model, metrics | {"trial": t.id, "params": t.params})
                                if on_best is not None:
                                    on_best(out_dir / "best")
                    s.trial = None
                    _save(done_file, trials, params, settings, time.time() - t0)
            if on_update is not None:
                on_update(trials)
            if should_stop is not None and should_stop():
                for s in slots:
                    if s.trial is not None:
                        s.runner.request_stop.remote(s.run_id)
                        s.poll = None
                        s.trial.state, s.trial.curve, s.trial.epochs, s.trial.fold_metrics, s.trial.seconds = "PENDING", [], 0, [], 0.0
                        s.trial = None
                for t, _ in pending:
                    if t.state == "RUNNING":  # some folds ran, others did not: all rerun
                        t.state, t.epochs, t.fold_metrics = "PENDING", 0, []
                _save(done_file, trials, params, settings, time.time() - t0)
                raise SearchStopped()
        finished = [t for t in trials if t.state == "SUCCEEDED" and t.metric is not None]
        if k and finished:  # refit the configuration chosen by cross-validation on the usual split
            best = max(finished, key=rank)
            spec = specs.spec(best.id)
            if not slots:  # every trial had finished before this run (a resume): a slot for the refit alone
                slots.append(_Slot(spec, placement_group, 0, policy))
            _, flat, meta, metrics = ray.get(slots[0].runner.run.remote(spec.to_dict(), None, 3600.0, None if slots[0].local else slots[0].pg))
            best.test_accuracy = metrics["test_accuracy"]
            if out_dir is not None:
                model = Model(spec.layers, tuple(meta["in_shape"]), meta["n_classes"], seed=spec.seed, classes=meta["classes"])
                model.set_flat(flat)
                model.pipeline = meta.get("pipeline")
                write_artifacts(out_dir / "best", spec, model, metrics | {"trial": best.id, "params": best.params, "cv_accuracy": best.metric})
    finally:
        for s in slots:
            s.close()
    finished = [t for t in trials if t.state == "SUCCEEDED" and t.metric is not None]
    best = max(finished, key=rank) if finished else None
    result = SearchResult(trials, [p.name for p in params], best, time.time() - t0, sum(t.epochs for t in trials))
    _save(done_file, trials, params, settings, result.seconds, best)
    if out_dir is not None:
        plot(result, out_dir / "search.png")
    return result


class SearchStopped(Exception):
    """The search was asked to stop; finished trials are kept in search.json, the rest rerun."""


def snapshot(trials: list[Trial], params: list[str], settings: SearchSettings, seconds: float, best: Trial | None = None) -> dict:
    """The search as search.json holds it: settings, parameter names, every trial so far."""
    return {"settings": settings.model_dump(), "params": params, "seconds": seconds, "best": best.id if best else None, "trials": [asdict(t) for t in trials]}


def save_table(path: Path, data: dict) -> None:
    """Write search.json atomically: a reader (the API, a resumed search) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def save_files(folder: Path, files: dict[str, bytes]) -> None:
    """Replace ``folder`` with ``files`` as a whole (written aside, then renamed in): after a
    crash it holds the old set or the new one, never half of each."""
    import shutil

    new, old = folder.with_name(folder.name + ".new"), folder.with_name(folder.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    for name, content in files.items():
        (new / Path(name).name).write_bytes(content)
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_files(folder: Path) -> dict[str, bytes] | None:
    """What :func:`save_files` last finished writing (the old set if a crash came between its renames)."""
    for d in (folder, folder.with_name(folder.name + ".old")):
        if d.is_dir():
            return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    return None


def _save(path: Path | None, trials: list[Trial], params: list[Param], settings: SearchSettings, seconds: float, best: Trial | None = None) -> None:
    if path is not None:
        save_table(path, snapshot(trials, [p.name for p in params], settings, seconds, best))


PLOT_SIZE = (6.4, 4.8)  # inches at 100 dpi
PLOT_LEFT, PLOT_RIGHT = 0.13, 0.95  # of the figure's width (the right: room for half the last tick label): the axes' sides (fixed margins: tight_layout costs 0.15 s)
TICK_CHARS = 14  # a text value's tick label is cut to this many characters
TICK_PX = 8  # a tick label's characters at the default 10 pt, in pixels (DejaVu Sans' widest digits and letters are under this)


def _label(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v)
    return text if len(text) <= TICK_CHARS else text[: TICK_CHARS - 1] + "\u2026"


def _log_axis(axis, lo: float, hi: float) -> None:
    """A log axis labelled in plain numbers (20, 50, 100 or 1e-05), never matplotlib's minor labels
    (2x10^1, 3x10^1 ...) that run into each other over one or two decades."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    decades = math.log10(hi / lo)
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,), numticks=8))
    axis.set_major_formatter(StrMethodFormatter("{x:g}"))
    axis.set_minor_formatter(NullFormatter())


def figure(result: SearchResult):
    """The figure :func:`plot` saves (None when no trial has a metric): laid out by fixed margins,
    so tick labels are thinned and the legend placed by rule, not by measuring drawn text."""
    from matplotlib.figure import Figure

    done = [t for t in result.trials if t.metric is not None]
    if not done or not result.params:
        return None
    fig = Figure(figsize=PLOT_SIZE, dpi=100)
    ax = fig.add_subplot()
    xs = [t.params[result.params[0]] for t in done]
    ys = [100 * t.metric for t in done]
    numeric = all(_number(v) for v in xs)
    bottom, top = 0.11, 0.93
    if len(result.params) == 1 or not numeric:
        if numeric:
            order = sorted(range(len(done)), key=lambda i: xs[i])
            px = [xs[i] for i in order]
        else:  # text, lists...: one place per distinct value, in the order first seen
            order = list(range(len(done)))
            labels = list(dict.fromkeys(_label(v) for v in xs))
            where = {text: i for i, text in enumerate(labels)}
            px = [where[_label(xs[i])] for i in order]
            width = (PLOT_RIGHT - PLOT_LEFT) * PLOT_SIZE[0] * 100
            longest = TICK_PX * max(len(text) for text in labels) + 10
            if len(labels) * longest <= width:  # every label, level
                ticks, rotation = list(range(len(labels))), 0
            else:  # upright, every step-th: a label's height (14 px) plus room between
                step = math.ceil(len(labels) * 22 / width)
                ticks, rotation = list(range(0, len(labels), step)), 90
                bottom = 0.11 + longest / (PLOT_SIZE[1] * 100)
            ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=rotation)
        py = [ys[i] for i in order]
        ax.plot(px, py, "o-", color="C0", label="validation accuracy")
        stopped = [(x, y, i) for x, y, i in zip(px, py, order) if done[i].state == "STOPPED"]
        if stopped:
            ax.plot([x for x, _, _ in stopped], [y for _, y, _ in stopped], "x", color="C3", ms=9, mew=2, label="stopped early (at a rung)")
        if result.best is not None and result.best in done:
            b = order.index(done.index(result.best))
            ax.plot([px[b]], [py[b]], "*", color="C1", ms=16, mec="k", label=f"best: trial {result.best.id}")
        ax.set_xlabel(result.params[0])
        ax.set_ylabel("validation accuracy (%)")
        # above the axes, under the title: the legend never covers a point, whatever the curve's shape
        top = 0.86
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01, 1.0, 0.05), mode="expand", ncol=3, borderaxespad=0.0, frameon=False, fontsize=9)
    else:
        zs = [t.params[result.params[1]] for t in done]
        sc = ax.scatter(xs, zs, c=ys, s=160, cmap="viridis", edgecolors="k")
        for x, z, y in zip(xs, zs, ys):
            ax.annotate(f"{y:.1f}", (x, z), textcoords="offset points", xytext=(0, 9), ha="center", fontsize=7)
        fig.colorbar(sc, ax=ax, label="validation accuracy (%)")
        ax.set_xlabel(result.params[0])
        ax.set_ylabel(result.params[1])
        if all(_number(z) for z in zs) and min(zs) > 0 and max(zs) / min(zs) >= 8:
            ax.set_yscale("log")
            _log_axis(ax.yaxis, min(zs), max(zs))
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 8:
        ax.set_xscale("log")
        _log_axis(ax.xaxis, min(xs), max(xs))
    elif numeric:  # at most 7 labels, about 80 px apart: room for 8 digits (matplotlib's own choice allows 42 px)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    fig.subplots_adjust(left=PLOT_LEFT, right=PLOT_RIGHT, bottom=bottom, top=top)
    stopped = sum(t.state == "STOPPED" for t in result.trials)
    fig.suptitle(f"{len(done)} trials" + (f", {stopped} stopped early" if stopped else "") + (f"; best trial {result.best.id}" if result.best else ""), y=0.98)
    return fig


def plot(result: SearchResult, path: Path) -> Path | None:
    """The metric over the searched parameters: a curve for one, a coloured map for two or more
    (the first two), like the DLPF paper's error surface over learning rate x hidden units."""
    fig = figure(result)
    if fig is None:
        return None
    fig.savefig(path)
    return path
