"""Random search over a finite space: drawn without replacement, refused past its size, the
same for the same seed; a float range is still drawn from freely. Pure functions, no Ray; one
check runs the installed CLI, the way a user meets the refusal. And search.png: its tick labels
and legend, checked by matplotlib's own geometry after a draw."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg

from tests.helpers import TINY, run_cli
from xsharp.cluster.search import SearchResult, Trial, figure, plot, search_space, trial_specs
from xsharp.spec import SpecError


def space(**search) -> dict:
    """3 grid values x 2 from a range with a step x 4 from an integer range: 24 combinations."""
    raw = copy.deepcopy(TINY)
    raw["train"]["learning_rate"] = {"grid": [0.05, 0.1, 0.3]}
    raw["model"][0]["rbm"]["hidden"] = {"range": [16, 48], "step": 32}
    raw["train"]["epochs"] = {"range": [2, 5]}  # integers, no step: 2, 3, 4, 5
    raw["search"] = search
    return raw


EVERY = set(itertools.product([16, 48], [2, 3, 4, 5], [0.05, 0.1, 0.3]))  # document order: hidden, epochs, learning_rate


def combos(raw: dict) -> list[tuple]:
    return list(search_space(raw).trials.combos)


def test_the_issue_two_samples_of_two_values_run_each_once():
    raw = copy.deepcopy(TINY)
    raw["train"]["learning_rate"] = {"grid": [0.01, 0.1]}
    raw["search"] = {"strategy": "random", "samples": 2}
    _, _, trials = trial_specs(raw)
    assert sorted(t[0]["train.learning_rate"] for t in trials) == [0.01, 0.1]
    assert sorted(trials.spec(i).train.learning_rate for i in range(2)) == [0.01, 0.1]  # the trials' own specs, too


@pytest.mark.parametrize("strategy", ["random", "asha"])
def test_samples_equal_to_the_space_give_every_combination_exactly_once(strategy):
    got = combos(space(strategy=strategy, samples=24, seed=5))
    assert len(got) == 24 and set(got) == EVERY


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fewer_samples_are_distinct_and_the_same_for_the_same_seed(seed):
    got = combos(space(strategy="random", samples=10, seed=seed))
    assert len(got) == 10 and len(set(got)) == 10 and set(got) <= EVERY
    assert got == combos(space(strategy="random", samples=10, seed=seed))
    assert got != combos(space(strategy="random", samples=10, seed=seed + 100))


def test_a_sparse_draw_from_a_large_space_has_no_repeat_and_keeps_the_prior():
    raw = copy.deepcopy(TINY)
    raw["train"]["learning_rate"] = {"grid": [round(0.01 * i, 2) for i in range(1, 101)]}
    raw["model"][0]["rbm"]["hidden"] = "auto"  # integers 16..512, log-uniform: 497 values
    raw["search"] = {"strategy": "random", "samples": 2000, "seed": 7}
    got = combos(raw)
    assert len(got) == 2000 and len(set(got)) == 2000
    hidden = [h for h, _ in got]
    assert all(16 <= h <= 512 and isinstance(h, int) for h in hidden)
    assert sum(h < math.sqrt(16 * 512) for h in hidden) > 800  # log-uniform: about half below the geometric middle (uniform: 15%)


@pytest.mark.parametrize("strategy", ["random", "asha"])
def test_more_samples_than_the_space_holds_are_refused_with_its_size(strategy):
    with pytest.raises(SpecError) as e:
        trial_specs(space(strategy=strategy, samples=25))
    assert e.value.problems == [
        f"search.samples: 25 trials asked for, but this search space has only 24 distinct combinations "
        f"(model[0].rbm.hidden: 2 values, train.epochs: 4 values, train.learning_rate: 3 values) and {strategy} search never repeats one: "
        "set samples to 24 or fewer, leave it out to run each combination once, or use strategy: grid"
    ]


def test_samples_left_out_run_a_space_smaller_than_the_default_once_each():
    raw = space(strategy="random")
    raw["train"]["epochs"] = 3  # 6 combinations, fewer than the default 16 samples
    got = combos(raw)
    assert len(got) == 6 and set(got) == set(itertools.product([16, 48], [0.05, 0.1, 0.3]))  # hidden, learning_rate
    assert len(combos(space(strategy="random"))) == 16  # 24 combinations: the default 16 draws, distinct
    assert len(set(combos(space(strategy="random")))) == 16


def test_a_float_range_is_drawn_with_replacement_past_any_grid_size():
    raw = space(strategy="random", samples=40, seed=2)
    raw["train"]["momentum"] = {"range": [0.5, 0.9]}  # one float range: an infinite space
    got = combos(raw)
    assert len(got) == 40 and len(set(got)) == 40  # a repeat has probability zero
    assert len({c[:3] for c in got}) <= 24 < 40  # the finite parameters do repeat
    assert all(0.5 <= c[3] <= 0.9 for c in got)
    assert got == combos(space(strategy="random", samples=40, seed=2) | {"train": raw["train"]})


def test_the_cli_refuses_too_many_samples_before_running_anything(tmp_path):
    raw = copy.deepcopy(TINY)
    raw["train"]["learning_rate"] = {"grid": [0.01, 0.1]}
    raw["search"] = {"strategy": "random", "samples": 3}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(raw))
    r = run_cli("run", str(path), "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stdout + r.stderr
    text = " ".join(r.stderr.split())  # rich wraps long lines
    assert "search.samples: 3 trials asked for, but this search space has only 2 distinct combinations" in text
    assert "set samples to 2 or fewer" in text
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- search.png
def result_over(values: list, name: str = "model[0].rbm.hidden", second: list | None = None) -> SearchResult:
    """Finished trials over ``values``, every fifth stopped early (as ASHA leaves them)."""
    trials = []
    for i, v in enumerate(values):
        params = {name: v} | ({"train.learning_rate": second[i % len(second)]} if second else {})
        trials.append(Trial(i, params, "STOPPED" if i % 5 == 4 else "SUCCEEDED", metric=0.8 + 0.15 * math.sin(i / 3), epochs=20))
    best = max(trials, key=lambda t: t.metric)
    return SearchResult(trials, [name] + (["train.learning_rate"] if second else []), best, 1.0, 20 * len(trials))


def overlap(a, b) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 0 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0


@pytest.mark.parametrize(
    "values",
    [
        list(range(16, 513, 16)),  # a log axis over 1.5 decades: matplotlib labels its minor ticks 2x10^1, 3x10^1 ... into each other
        [round(v, 8) for v in np.geomspace(1e-6, 0.5, 40)],  # many decades
        list(range(100_000, 140_000, 1000)),  # a linear axis with long numbers
        [f"activation-{i}" for i in range(40)],  # text values: one place each
        [[64, 32 + i] for i in range(25)],  # lists, as a grid of layer sizes gives them
    ],
)
def test_search_png_tick_labels_never_overlap_and_the_legend_covers_no_point(values, tmp_path):
    result = result_over(values)
    fig = figure(result)
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    frame, page = ax.get_window_extent(renderer), fig.bbox
    labels = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    labels = [b for b in labels if frame.x0 - 1 <= (b.x0 + b.x1) / 2 <= frame.x1 + 1]  # ticks inside the view, the ones drawn
    assert len(labels) >= 3
    for a, b in itertools.combinations(labels, 2):
        assert not overlap(a, b), (a, b)
    assert all(b.x0 >= 0 and b.y0 >= 0 and b.x1 <= page.x1 for b in labels)  # none cut off at the figure's edge
    legend = ax.get_legend().get_window_extent(renderer)
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert names == ["validation accuracy", "stopped early (at a rung)", f"best: trial {result.best.id}"]
    lines = [line.get_window_extent(renderer) for line in ax.lines]  # with their markers
    points = ax.transData.transform(np.column_stack(ax.lines[0].get_data()))
    assert len(lines) == 3 and len(points) == len(values)
    for box in lines:
        assert not overlap(legend, box), (legend, box)
    assert not any(legend.x0 <= x <= legend.x1 and legend.y0 <= y <= legend.y1 for x, y in points)
    assert legend.y1 <= page.y1 and not overlap(legend, fig.texts[0].get_window_extent(renderer))  # under the title
    assert plot(result, tmp_path / "search.png") and (tmp_path / "search.png").read_bytes()[:4] == b"\x89PNG"


def test_search_png_over_two_parameters_labels_a_log_axis_in_plain_numbers():
    result = result_over([round(v, 8) for v in np.geomspace(1e-6, 0.5, 30)], name="train.weight_decay", second=[16, 64, 256])
    fig = figure(result)
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    for axis_labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        shown = [t for t in axis_labels if t.get_visible() and t.get_text()]
        boxes = [t.get_window_extent() for t in shown]
        assert shown and all("times" not in t.get_text() and "mathdefault" not in t.get_text() for t in shown)
        assert not any(overlap(a, b) for a, b in itertools.combinations(boxes, 2))


def test_huge_integer_ranges_are_drawn_exactly_and_never_spin():
    """A float draw reaches only every 256th integer near 2**60: a no-repeat draw kept retrying for
    minutes. Integers are drawn as integers; a log range's few reachable values end the retries early."""
    from xsharp.cluster.search import draws
    from xsharp.searchspec import Param

    wide = Param(("train", "batch_size"), "batch_size", low=2**60, high=2**60 + 10**6, integer=True)
    picked = draws([wide], 8000, seed=0)
    assert len(set(picked)) == 8000 and all(2**60 <= v <= 2**60 + 10**6 for (v,) in picked)
    assert len({v % 256 for (v,) in picked}) > 200  # every integer reachable, not every 256th
    skewed = Param(("train", "epochs"), "epochs", low=2**60, high=2**60 + 10**6, integer=True, log=True)
    assert len(set(draws([skewed], 8000, seed=0))) == 8000
