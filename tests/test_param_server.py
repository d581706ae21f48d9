"""Asynchronous parameter server: sharded servers, push / pull_req / pull_wait, bounded staleness."""

import copy

import numpy as np
import pytest

from tests.helpers import TINY
from xsharp.algos.training import Stopped
from xsharp.cluster.runner import load_data, run_job
from xsharp.parallel import RunContext
from xsharp.parallel.param_server import ParamServerMode, pieces, shard_bounds
from xsharp.spec import parse_spec

DIGITS_MLP = {  # trains to ~96.7 % in local mode in 20 short epochs
    "name": "digits-mlp",
    "data": {"dataset": "digits"},
    "model": [{"dense": {"units": 128, "activation": "tanh"}}, "softmax"],
    "pretrain": {"epochs": 0},
    "train": {"epochs": 20, "learning_rate": 0.05},
    "seed": 0,
}


QUICK = TINY | {"pretrain": {"epochs": 1, "batch_size": 20}, "train": {"epochs": 4, "batch_size": 20, "learning_rate": 0.3}}


def ps(spec: dict, workers: int, servers: int, staleness: int | None) -> dict:
    return spec | {"mode": "param_server", "resources": {"workers": workers, "cpus_per_worker": 0.5}, "parallel": {"servers": servers, "staleness": staleness}}


@pytest.fixture
def quick() -> dict:
    return copy.deepcopy(QUICK)


@pytest.fixture(scope="module")
def local_quick():
    return run_job(parse_spec(QUICK))


def test_shards_are_contiguous_slices_and_phases_touch_only_theirs():
    bounds = shard_bounds(10, 3)
    assert bounds == [0, 3, 6, 10]
    assert pieces(bounds, 0, 10) == [(0, 0, 3), (1, 3, 6), (2, 6, 10)]
    assert pieces(bounds, 4, 6) == [(1, 4, 6)]  # a pretrained layer on one server pushes to that one only
    assert pieces(bounds, 2, 7) == [(0, 2, 3), (1, 3, 6), (2, 6, 7)]


def test_one_worker_at_staleness_zero_is_local_training(ray_address, quick, local_quick):
    # (two workers at staleness 0 are sequential SGD too: see test_fault_tolerance)
    workers = 1
    # two servers: the rbm's slice lies on server 0 only, so server 1 sits out a pretraining phase
    result = run_job(parse_spec(ps(quick, workers, 2, 0)))
    np.testing.assert_allclose(result.model.get_flat(), local_quick.model.get_flat(), rtol=1e-5, atol=1e-5)  # BLAS threads only
    assert result.metrics["samples"] == local_quick.metrics["samples"]
    assert result.metrics["servers"] == 2 and result.metrics["workers"] == workers
    assert [round(h["loss"], 4) for h in result.metrics["finetune"]] == [round(h["loss"], 4) for h in local_quick.metrics["finetune"]]


def test_asynchronous_workers_reach_the_sync_accuracy_floor_on_digits(ray_address):
    local = run_job(parse_spec(DIGITS_MLP))
    result = run_job(parse_spec(ps(DIGITS_MLP, 2, 2, 2)))
    assert local.metrics["test_accuracy"] >= 0.95
    assert result.metrics["test_accuracy"] >= 0.95, result.metrics["finetune"]
    assert not np.array_equal(result.model.get_flat(), local.model.get_flat())  # stale weights: not sequential SGD


def test_batchnorm_running_statistics_reach_the_servers(ray_address, quick, local_quick):
    quick["model"] = [{"dense": {"units": 24}}, {"batchnorm": {}}, "softmax"]
    quick["train"]["epochs"] = 4
    local = run_job(parse_spec(quick))
    result = run_job(parse_spec(ps(quick, 1, 2, 0)))
    running = local.model.params[1]["running_mean"]
    assert np.abs(running).max() > 0.01  # they moved
    np.testing.assert_allclose(result.model.params[1]["running_mean"], running, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.model.get_flat(), local.model.get_flat(), rtol=1e-4, atol=1e-5)


def test_a_stopped_run_resumes_at_its_step_boundary(ray_address, quick):
    quick["pretrain"] |= {"optimizer": "adam", "learning_rate": 0.01, "schedule": {"kind": "cosine"}}
    local = run_job(parse_spec(quick))
    spec = parse_spec(ps(quick, 2, 2, 0))
    data = load_data(spec)
    asked = iter(range(10**6))
    ctx = RunContext(data=data, should_stop=lambda: next(asked) == 30)  # 22 steps pretrain the rbm: step 8 of the autoencoder's phase
    with pytest.raises(Stopped) as e:
        ParamServerMode().run(spec, ctx)
    state = e.value.state
    sl = local.model.layout.module_slices[1]
    assert (state.phase, state.epoch) == (1, 0) and 8 < state.step <= 8 + 4  # the 2 x 2 steps in flight finish first
    assert state.optimizer_state.shape == (2 * (sl.stop - sl.start) + 1,)  # Adam's [m, v, t] over the autoencoder's slice, joined over servers
    result = ParamServerMode().run(spec, RunContext(data=data, resume=state))
    np.testing.assert_allclose(result.flat, local.model.get_flat(), rtol=1e-5, atol=1e-5)
    assert result.history.resumed_from[0]["step"] == state.step
