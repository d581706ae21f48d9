"""A search's trials, counted before they are built: the grid of every combination, random draws
without replacement, the cap on trials, and how many trials run at once.

A search is counted before it is built (values per range, trials in all) and refused past a
cap, the server's ``max_trials``. Trials are ordinary job specs, validated like any other.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xsharp.searchspec import Param, SearchSettings, settings_of, split_space
from xsharp.spec import JobSpec, SpecError, parse_spec

from ..capacity import Resources
from ..policy import Policy


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


def slots_for(settings: SearchSettings, trials: TrialSpecs, cpus: float, gpus: float) -> int:
    """How many trials at once fit ``cpus`` and ``gpus`` (at least one; no more than there are trials)."""
    need = Resources.of_job(trials.spec(0).resources)  # resources cannot be searched: every trial's
    fit = Resources(cpus, gpus).times(need, len(trials))
    return int(max(1, min(settings.max_parallel or fit, fit, len(trials))))
