"""How big and how deep a search may be, and what it may not vary: counted before anything is
built, refused with the field named; and a search's data confined as a job's, over real HTTP."""

from __future__ import annotations

import copy
import gc
import itertools
import signal

import pytest

from tests.helpers import TINY
from tests.service import Server, wait_state
from xsharp.cluster.search import search_space, trial_specs
from xsharp.searchspec import is_search, split_space
from xsharp.spec import JobSpec, SpecError


def grid_of(*sizes: int) -> dict:
    """TINY with ``sizes[0]`` hidden-unit counts x ``sizes[1]`` batch sizes (a grid search)."""
    raw = copy.deepcopy(TINY)
    raw["model"][0]["rbm"]["hidden"] = {"range": [1, sizes[0]], "step": 1}
    if len(sizes) > 1:
        raw["train"]["batch_size"] = {"range": [1, sizes[1]], "step": 1}
    return raw


def deep(levels: int, leaf=1) -> dict:
    node = leaf
    for _ in range(levels):
        node = {"a": node}
    return node


def problems(raw: dict, **kw) -> list[str]:
    with pytest.raises(SpecError) as e:
        trial_specs(raw, **kw)
    return e.value.problems


# --------------------------------------------------------------------------- size
def test_a_search_is_counted_before_it_is_built():
    assert problems(grid_of(2_000_000)) == ["model[0].rbm.hidden.range: 2000000 values at step 1, over the cap of 10000"]
    epochs = copy.deepcopy(TINY)
    epochs["train"]["epochs"] = {"range": [0, 100001], "step": 1}
    assert problems(epochs) == ["train.epochs.range: 100002 values at step 1, over the cap of 10000"]
    assert problems(grid_of(200, 200)) == ["search: 40000 trials, over this server's cap of 10000"]
    assert problems(grid_of(100, 100), max_trials=9999) == ["search: 10000 trials, over this server's cap of 9999"]
    listed = copy.deepcopy(TINY)
    listed["train"]["learning_rate"] = {"grid": [0.1] * 10_001}
    assert problems(listed) == ["train.learning_rate.grid: 10001 values, over the cap of 10000"]
    drawn = copy.deepcopy(TINY) | {"search": {"strategy": "random", "samples": 20_000}}
    drawn["train"]["learning_rate"] = {"range": [0.01, 0.5]}
    assert problems(drawn) == ["search: 20000 trials, over this server's cap of 10000"]
    assert len(search_space(drawn, max_trials=None).trials) == 20_000  # None: a search the server admitted before
    few = drawn | {"search": {"strategy": "random", "samples": 2}}
    assert len(trial_specs(few, max_trials=2)[2]) == 2  # a continuous range is drawn from, never listed: no cap of its own
    wide = copy.deepcopy(TINY) | {"search": {"strategy": "random", "samples": 4}}  # a range sampled at random is counted too
    wide["train"]["learning_rate"] = {"range": [0, 1e308], "step": 1e-300}
    assert problems(wide) == ["train.learning_rate.range: over 1e308 values at step 1e-300, over the cap of 10000"]


@pytest.mark.parametrize(
    "value,message",
    [
        ({"range": [0.01, float("inf")]}, "train.learning_rate.range: must be [low, high] numbers with low < high, got [0.01, Infinity]"),
        ({"range": [float("nan"), 0.1]}, "train.learning_rate.range: must be [low, high] numbers with low < high, got [NaN, 0.1]"),
        ({"range": [1, 10**400]}, "train.learning_rate.range: must be [low, high] numbers with low < high, got [1, 1000000000"),
        ({"range": [0.01, 0.1], "step": float("nan")}, "train.learning_rate.step: must be > 0, got NaN"),
        ({"range": [0, 10**300], "step": 10**-300}, "train.learning_rate.range: over 1e308 values at step 1e-300, over the cap of 10000"),
    ],
)
def test_ranges_past_a_floats_reach_are_refused_not_overflowed(value, message):
    raw = copy.deepcopy(TINY)
    raw["train"]["learning_rate"] = value
    assert problems(raw)[0].startswith(message)


def test_trials_are_built_when_asked_for_and_none_is_kept():
    raw = grid_of(100, 100)
    gc.collect()
    before = sum(isinstance(o, JobSpec) for o in gc.get_objects())
    settings, params, trials = trial_specs(raw)  # every trial validated, one at a time
    gc.collect()
    assert sum(isinstance(o, JobSpec) for o in gc.get_objects()) - before <= 1
    assert len(trials) == 10_000 and settings.strategy == "grid"
    order = list(itertools.product(range(1, 101), range(1, 101)))  # itertools.product's order, the last fastest
    for i in (0, 1, 99, 100, 5_432, 9_999, -1):
        values, spec = trials[i]
        assert values == {"model[0].rbm.hidden": order[i][0], "train.batch_size": order[i][1]}
        assert spec.model[0].rbm.hidden == order[i][0] and spec.train.batch_size == order[i][1]
        assert spec.name == f"tiny-t{i % 10_000}"
    with pytest.raises(IndexError):
        trials[10_000]


def test_a_combination_that_breaks_a_rule_is_refused_though_each_value_passes_alone():
    raw = copy.deepcopy(TINY)
    ae = raw["model"][1]["autoencoder"]
    ae["sparsity_weight"], ae["activation"] = {"grid": [0.0, 0.5]}, {"grid": ["sigmoid", "relu"]}
    assert problems(raw)[0].startswith(
        "trial 3 (model[1].autoencoder.sparsity_weight=0.5, model[1].autoencoder.activation=relu): model[1].autoencoder: the sparsity penalty needs"
    )


# --------------------------------------------------------------------------- depth
@pytest.mark.parametrize("where", [("train", "zz"), ("model", 0, "rbm", "zz"), ("search", "zz"), ("zz",)])
def test_a_spec_nested_too_deep_is_refused_by_name_not_by_recursion(where):
    searching = where[0] == "search"  # a spec with a search section is one without a walk: is_search answers at once
    raw = copy.deepcopy(TINY) | ({"search": {}} if searching else {})
    node = raw
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = deep(5000)  # past the interpreter's recursion limit: only a bounded walk survives it
    prefix = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in where).lstrip(".")
    for check in (trial_specs, split_space) + (() if searching else (is_search,)):
        with pytest.raises(SpecError) as e:
            check(raw)
        (problem,) = e.value.problems
        assert problem.startswith(prefix + ".a.a.a") and problem.endswith(": nested deeper than 64 levels"), problem
        assert len(problem) < 200


def test_a_spec_nested_up_to_the_bound_is_judged_by_the_spec():
    raw = copy.deepcopy(TINY)
    raw["train"]["zz"] = deep(60)
    assert problems(raw)[0].startswith("train.zz: unknown field")


# --------------------------------------------------------------------------- what may not vary
@pytest.mark.parametrize(
    "where,value,message",
    [
        (("data", "path"), {"grid": ["a.csv", "/etc/shadow"]}, "data.path: data sources cannot be searched"),
        (("data", "labels"), {"grid": ["a", "b"]}, "data.labels: data sources cannot be searched"),
        (("data", "dataset"), {"grid": ["digits", "iris"]}, "data.dataset: data sources cannot be searched"),
        (("data",), {"grid": [{"dataset": "digits"}, {"path": "/etc/shadow"}]}, "data: data sources cannot be searched"),
        (("mode",), {"grid": ["local", "data_parallel"]}, "mode: the execution mode cannot be searched"),
        (("resources", "cpus_per_worker"), {"range": [1, 4], "step": 1}, "resources.cpus_per_worker: resources cannot be searched"),
    ],
)
def test_what_every_trial_shares_cannot_be_searched(where, value, message):
    raw = copy.deepcopy(TINY)
    node = raw
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = value
    assert problems(raw)[0].startswith(message)


def test_other_data_options_can_be_searched():
    raw = copy.deepcopy(TINY)
    raw["data"]["limit"] = {"grid": [300, 600]}
    assert [t[0] for t in trial_specs(raw)[2]] == [{"data.limit": 300}, {"data.limit": 600}]


# --------------------------------------------------------------------------- over HTTP
@pytest.fixture(scope="module")
def server(tmp_path_factory, ray_address):
    base = tmp_path_factory.mktemp("search-limits")
    root = base / "data-root"
    root.mkdir()
    rows = "\n".join(f"{'good' if i % 2 else 'bad'},review number {i} is {'fine' if i % 2 else 'awful'}" for i in range(40))
    (root / "reviews.csv").write_text("label,text\n" + rows + "\n")
    s = Server(base / "home", ray_address, "--data-root", str(root), "--max-trials", "500").start()
    s.root = root
    s.tokens = {"alice": s.add_user("alice")}
    yield s
    s.kill(signal.SIGTERM)


def csv_search(path: str) -> dict:
    return TINY | {
        "name": "csv-search",
        "data": {"path": path, "format": "csv", "features": [{"bow": {"min_count": 1}}], "validation_fraction": 0, "limit": {"grid": [30, 40]}},
        "model": [{"softmax": {}}],
        "pretrain": {"epochs": 0},
        "train": {"epochs": 2, "batch_size": 8},
        "resources": {"cpus_per_worker": 1},
    }


def test_the_server_refuses_a_search_past_its_cap_or_its_depth_quickly(server):
    with server.client(server.tokens["alice"]) as alice:
        r = alice.post("/v1/searches", json=grid_of(2_000_000))
        assert r.status_code == 422 and r.json()["detail"] == ["model[0].rbm.hidden.range: 2000000 values at step 1, over the cap of 500"]
        r = alice.post("/v1/searches", json=grid_of(30, 20))  # the server's --max-trials, not the default
        assert r.status_code == 422 and r.json()["detail"] == ["search: 600 trials, over this server's cap of 500"]
        raw = grid_of(2, 2)
        raw["train"]["zz"] = deep(900)
        r = alice.post("/v1/searches", json=raw)
        assert r.status_code == 422, r.text
        assert alice.get("/healthz").status_code == 200 and alice.get("/v1/searches").json() == []


def test_a_searchs_data_is_confined_as_a_jobs(server):
    with server.client(server.tokens["alice"]) as alice:
        r = alice.post("/v1/searches", json=csv_search(str(server.home / "xsharp.db")))
        assert r.status_code == 403 and r.json()["detail"][0].startswith("data.path: not under a data root"), r.text
        r = alice.post("/v1/searches", json=csv_search("reviews.csv") | {"priority": 50})
        assert r.status_code == 403 and r.json()["detail"][0].startswith("priority: "), r.text
        r = alice.post("/v1/searches", json=csv_search("nope.csv"))
        assert r.status_code == 422, r.text
        job = alice.post("/v1/searches", json=csv_search("reviews.csv")).json()  # relative: taken under the root
        stored = alice.get(f"/v1/jobs/{job['id']}").json()["spec"]
        assert stored["data"]["path"] == str((server.root / "reviews.csv").resolve())
        assert stored["data"]["limit"] == {"grid": [30, 40]}  # the searched options stay searched
        alice.post(f"/v1/jobs/{job['id']}/stop")
        wait_state(alice, job["id"], ["STOPPED", "SUCCEEDED"])
