"""Hyper-parameter search: the search space, strategies, ASHA, and trials run on a real Ray."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from tests.helpers import TINY, run_cli
from xsharp.cluster.jobrunner import JobRunner
from xsharp.cluster.search import ASHA, run_search, trial_specs
from xsharp.searchspec import split_space
from xsharp.spec import SpecError


def spec(**search) -> dict:
    raw = copy.deepcopy(TINY)
    raw["train"]["learning_rate"] = {"grid": [0.05, 0.3]}
    raw["model"][0]["rbm"]["hidden"] = {"range": [16, 48], "step": 32}
    if search:
        raw["search"] = search
    return raw


def test_the_three_ways_to_give_a_value():
    raw = spec()
    raw["train"]["momentum"] = "auto"
    raw["pretrain"]["learning_rate"] = {"range": [0.01, 0.1], "step": 0.03}
    base, params = split_space(raw)
    names = {p.name: p for p in params}
    assert set(names) == {"model[0].rbm.hidden", "pretrain.learning_rate", "train.learning_rate", "train.momentum"}
    assert names["model[0].rbm.hidden"].grid() == [16, 48]
    assert names["pretrain.learning_rate"].grid() == pytest.approx([0.01, 0.04, 0.07, 0.1])
    assert names["train.momentum"].low == 0.5 and names["train.momentum"].high == 0.95
    assert base["train"]["learning_rate"] == 0.05 and base["model"][0]["rbm"]["hidden"] == 16
    settings, _, trials = trial_specs(raw)
    assert settings.strategy == "grid" and len(trials) == 2 * 4 * 2 * 4  # auto gives a 4-point grid
    assert len({json.dumps(t[0], sort_keys=True) for t in trials}) == len(trials)


def test_random_draws_stay_in_range_and_respect_log_scale():
    raw = spec(strategy="random", samples=50, seed=1)
    raw["train"]["learning_rate"] = {"range": [0.001, 1.0], "log": True}
    _, _, trials = trial_specs(raw)
    lrs = [t[0]["train.learning_rate"] for t in trials]
    assert len(trials) == 50 and all(0.001 <= v <= 1.0 for v in lrs)
    assert sum(v < 0.03 for v in lrs) > 15  # log-uniform: about half below the geometric middle
    assert all(t[0]["model[0].rbm.hidden"] in (16, 48) for t in trials)


@pytest.mark.parametrize(
    "where,value,message",
    [
        (("train", "learning_rate"), {"range": [0.3, 0.1]}, "train.learning_rate.range: must be [low, high]"),
        (("train", "learning_rate"), {"range": [0.1, 0.3], "step": -1}, "train.learning_rate.step: must be > 0"),
        (("train", "learning_rate"), {"grid": []}, "train.learning_rate.grid: must be a non-empty list"),
        (("train", "batch_size"), {"grid": [32, -3]}, "trial 1 (model[0].rbm.hidden=16, train.batch_size=-3): train.batch_size: must be > 0, got -3"),
        (("seed",), "auto", "seed: must be an integer, got 'auto'"),
        (("resources", "workers"), {"grid": [1, 2]}, "resources.workers: resources cannot be searched"),
    ],
)
def test_a_bad_search_names_the_field(where, value, message):
    raw = copy.deepcopy(TINY)
    raw["model"][0]["rbm"]["hidden"] = {"grid": [16]}
    node = raw
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = value
    with pytest.raises(SpecError) as e:
        trial_specs(raw)
    assert any(p.startswith(message) for p in e.value.problems), e.value.problems


def test_search_settings_are_checked():
    with pytest.raises(SpecError) as e:
        trial_specs(spec(strategy="bayes"))
    assert e.value.problems[0].startswith("search.strategy: must be one of 'grid', 'random' or 'asha'")


def test_asha_keeps_the_top_third_at_each_rung():
    asha = ASHA(max_epochs=20, reduction_factor=3, min_epochs=1)
    assert sorted(asha.rungs) == [1, 3, 9]
    assert asha.keep(1, 0.5) and asha.keep(1, 0.6)  # too few results to judge
    assert not asha.keep(1, 0.4)  # below the top third of [0.5, 0.6, 0.4]
    assert asha.keep(1, 0.9)
    assert asha.keep(2, 0.0)  # not a rung


def test_grid_search_runs_trials_in_parallel_records_failures_and_never_reruns(tmp_path, ray_address):
    raw = spec()
    raw["data"]["limit"] = {"grid": [600, 1]}  # 1 row cannot be split: those trials fail, the search goes on
    out = tmp_path / "s"
    result = run_search(raw, out, runner=JobRunner)
    states = {(t.params["data.limit"], t.state) for t in result.trials}
    assert states == {(600, "SUCCEEDED"), (1, "FAILED")}
    assert all("DataError" in t.error for t in result.trials if t.state == "FAILED")
    ok = [t for t in result.trials if t.state == "SUCCEEDED"]
    assert len(ok) == 4 and all(t.epochs == 20 and t.metric > 0.5 for t in ok)
    assert result.best.metric == max(t.metric for t in ok)
    best = json.loads((out / "best" / "metrics.json").read_text())
    assert best["trial"] == result.best.id and best["test_accuracy"] == result.best.test_accuracy
    assert (out / "search.png").read_bytes()[:4] == b"\x89PNG"
    again = run_search(raw, out, runner=JobRunner)  # everything finished: nothing runs again
    assert [(t.state, t.seconds, t.metric) for t in again.trials] == [(t.state, t.seconds, t.metric) for t in result.trials]


def test_asha_stops_weak_trials_early(tmp_path, ray_address):
    raw = copy.deepcopy(TINY)
    raw["train"]["learning_rate"] = {"range": [0.0005, 0.5], "log": True}
    raw["search"] = {"strategy": "asha", "samples": 8, "seed": 3, "reduction_factor": 2, "min_epochs": 2}
    result = run_search(raw, tmp_path / "a", runner=JobRunner)
    stopped = [t for t in result.trials if t.state == "STOPPED"]
    assert stopped and all(t.epochs < 20 for t in stopped)
    assert result.trial_epochs < 8 * 20
    assert result.best is not None and result.best.state == "SUCCEEDED"


def test_cli_runs_a_search_and_shows_it(tmp_path, ray_address):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(spec()))
    out = tmp_path / "out"
    r = run_cli("run", str(path), "--out", str(out), env={"XSHARP_RAY_ADDRESS": ray_address})
    assert r.returncode == 0, r.stderr
    assert "4 trials" in r.stdout and "best: trial" in r.stdout
    r = run_cli("search", "show", str(out), "-o", "json")
    data = json.loads(r.stdout)
    assert r.returncode == 0 and len(data["trials"]) == 4 and data["params"] == ["model[0].rbm.hidden", "train.learning_rate"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec() | {"search": {"samples": 0}}))
    r = run_cli("run", str(bad))
    assert r.returncode == 2 and "search.samples: must be >= 1, got 0" in r.stderr


def test_asha_over_grids_alone_takes_every_combination():
    raw = spec(strategy="asha")
    assert len(trial_specs(raw)[2]) == 4
    raw["search"]["samples"] = 3
    assert len(trial_specs(raw)[2]) == 3


def test_k_fold_cross_validation_scores_each_trial_by_its_mean_fold_accuracy(tmp_path, ray_address):
    raw = spec(folds=3)
    raw["model"][0]["rbm"]["hidden"] = 32
    result = run_search(raw, tmp_path / "cv", runner=JobRunner)
    assert [t.state for t in result.trials] == ["SUCCEEDED", "SUCCEEDED"]
    for t in result.trials:
        assert len(t.fold_metrics) == 3 and t.metric == pytest.approx(sum(t.fold_metrics) / 3) and t.epochs == 3 * 20
    assert len({tuple(t.fold_metrics) for t in result.trials}) == 2
    best = json.loads((tmp_path / "cv" / "best" / "metrics.json").read_text())
    assert best["trial"] == result.best.id and best["cv_accuracy"] == result.best.metric  # refit after the choice
    assert result.best.test_accuracy == best["test_accuracy"]
    (tmp_path / "cv" / "best").rename(tmp_path / "cv-best-before")
    again = run_search(raw, tmp_path / "cv", runner=JobRunner)  # a resume after the last fold: nothing left to train but the refit
    assert [t.seconds for t in again.trials] == [t.seconds for t in result.trials] and again.best.id == result.best.id
    timing = ("train_seconds", "samples_per_second", "seconds")
    same = lambda m: {k: v for k, v in m.items() if k not in timing}  # noqa: E731
    assert same(json.loads((tmp_path / "cv" / "best" / "metrics.json").read_text())) == same(best)  # the same refit, again
    with pytest.raises(SpecError, match="folds"):
        trial_specs(spec(strategy="asha", folds=3))


def test_a_best_model_the_table_does_not_back_is_dropped_on_resume(tmp_path, ray_address):
    """A crash between keeping a new best model and saving the table that records its trial:
    the resume must not ship that model under another trial's name."""
    out = tmp_path / "s"
    first = run_search(spec(max_parallel=1), out, runner=JobRunner)
    table = json.loads((out / "search.json").read_text())
    best = first.best.id
    table["trials"][best] |= {"state": "RUNNING", "metric": None, "curve": [], "epochs": 0}  # the table from just before it finished
    (out / "search.json").write_text(json.dumps(table))
    again = run_search(spec(max_parallel=1), out, runner=JobRunner)
    assert [t.seconds for i, t in enumerate(again.trials) if i != best] == [t.seconds for i, t in enumerate(first.trials) if i != best]
    assert again.best.id == best and again.best.metric == first.best.metric  # trained again, to the same result
    assert json.loads((out / "best" / "metrics.json").read_text())["trial"] == best
    # had the rerun scored lower, the table's best would be another trial, whose model is gone
    other = next(t.id for t in again.trials if t.id != best)
    table = json.loads((out / "search.json").read_text())
    table["trials"][other]["metric"] = 2.0
    (out / "search.json").write_text(json.dumps(table))
    last = run_search(spec(max_parallel=1), out, runner=JobRunner)  # nothing left to run
    assert last.best.id == other and not (out / "best").exists()  # no model rather than one under the wrong trial


def test_a_plain_spec_with_device_auto_is_no_search():
    from xsharp.searchspec import is_search
    from xsharp.spec import parse_spec

    assert not is_search(parse_spec(TINY).to_dict())  # resources.device: auto is a device, not a prior
