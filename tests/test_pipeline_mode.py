"""Pipeline model parallel: stages on actors, GPipe micro-batches, the update of local training."""

import copy

import numpy as np
import pytest

from tests.helpers import TINY
from xsharp.algos.training import Stopped
from xsharp.cluster.runner import load_data, run_job
from xsharp.parallel import RunContext
from xsharp.parallel.pipeline import PipelineMode, balance
from xsharp.spec import SpecError, parse_spec

QUICK = TINY | {"pretrain": {"epochs": 1, "batch_size": 20}, "train": {"epochs": 4, "batch_size": 20, "learning_rate": 0.3}}


def pipe(spec: dict, stages: int, micro: int, partition=None) -> dict:
    return spec | {"mode": "pipeline", "resources": {"workers": stages, "cpus_per_worker": 0.5}, "parallel": {"micro_batches": micro, "partition": partition}}


@pytest.fixture(scope="module")
def local_quick():
    return run_job(parse_spec(QUICK))


def test_balance_cuts_contiguous_stages_by_parameter_count():
    assert balance([16704, 33152, 1290], 2) == [1, 2]  # the digits DBN: rbm | rbm + softmax
    assert balance([10, 10, 10, 10], 2) == [2, 2]
    assert balance([100, 1, 1, 1], 3) == [1, 1, 2]
    assert balance([5, 0, 0], 3) == [1, 1, 1]  # every stage holds a module, even one without parameters


def test_one_micro_batch_is_local_training_bit_for_bit(ray_address, local_quick):
    result = run_job(parse_spec(pipe(QUICK, 2, 1)))
    np.testing.assert_array_equal(result.model.get_flat(), local_quick.model.get_flat())
    assert result.metrics["samples"] == local_quick.metrics["samples"]
    # per-stage parameter memory: rbm | autoencoder + softmax (balanced by count), float32
    memory = result.metrics["stage_memory"]
    assert [m["modules"] for m in memory] == [["rbm"], ["autoencoder", "softmax"]]
    sizes = [sl.stop - sl.start for sl in local_quick.model.layout.module_slices]
    assert [m["parameters"] for m in memory] == [sizes[0], sizes[1] + sizes[2]]
    assert all(m["parameter_bytes"] == 4 * m["parameters"] for m in memory)


def test_micro_batches_add_up_to_the_batch_gradient(ray_address, local_quick):
    result = run_job(parse_spec(pipe(QUICK, 3, 3)))  # one module a stage; 20 rows in micro-batches of 7, 7, 6
    np.testing.assert_allclose(result.model.get_flat(), local_quick.model.get_flat(), rtol=1e-4, atol=1e-4)  # float32 reassociation only
    assert [round(h["loss"], 3) for h in result.metrics["finetune"]] == [round(h["loss"], 3) for h in local_quick.metrics["finetune"]]
    assert result.metrics["val_accuracy"] == local_quick.metrics["val_accuracy"]


def test_dropout_on_a_later_stage_draws_what_local_training_draws(ray_address):
    spec = copy.deepcopy(QUICK)
    spec["model"] = [{"dense": {"units": 32}}, {"dropout": {"rate": 0.3}}, {"dense": {"units": 24}}, {"dropout": {"rate": 0.2}}, "softmax"]
    local = run_job(parse_spec(spec))
    result = run_job(parse_spec(pipe(spec, 2, 2, [2, 3])))  # the second stage's generator goes on from the first's
    np.testing.assert_allclose(result.model.get_flat(), local.model.get_flat(), rtol=1e-4, atol=1e-4)


def test_a_stopped_pipeline_resumes_from_its_joined_state(ray_address):
    adam = QUICK | {"train": QUICK["train"] | {"optimizer": "adam", "learning_rate": 0.01, "schedule": {"kind": "cosine"}}}
    local = run_job(parse_spec(adam))
    spec = parse_spec(pipe(adam, 2, 2))
    data = load_data(spec)
    seen = []
    ctx = RunContext(data=data, report=seen.append, should_stop=lambda: any(e.phase == "finetune" and e.epoch >= 2 for e in seen))
    with pytest.raises(Stopped) as e:
        PipelineMode().run(spec, ctx)
    state = e.value.state
    n = local.model.layout.size
    assert state.phase == 2 and state.flat.shape == (n,) and state.optimizer_state.shape == (2 * n + 1,)  # Adam's [m, v, t], joined over stages
    result = PipelineMode().run(spec, RunContext(data=data, resume=state))
    np.testing.assert_allclose(result.flat, local.model.get_flat(), rtol=1e-4, atol=1e-4)


def test_layouts_that_cannot_run_name_the_field(tiny):
    with pytest.raises(SpecError) as e:
        parse_spec(pipe(tiny, 4, 2))
    assert e.value.problems == ["parallel.stages: a stage holds at least one module and the model has 3, got 4"]
    with pytest.raises(SpecError) as e:
        parse_spec(pipe(tiny, 2, 2, [1, 1]))
    assert e.value.problems == ["parallel.partition: needs 2 counts (one per stage) summing to 3 modules, got [1, 1]"]
    with pytest.raises(SpecError) as e:
        parse_spec(tiny | {"mode": "hybrid", "resources": {"workers": 3}, "parallel": {"groups": 2}})
    assert e.value.problems == ["resources.workers: hybrid runs 2 group(s) x 1 stage(s) = 2 workers, got 3"]


def test_the_input_pipeline_gathers_ahead_without_changing_results():
    """Each worker gathers the next batch's rows on a thread while the current batch computes."""
    from xsharp.algos.training import ModelEngine, fit, plan, run_phases
    from xsharp.parallel.execution import build_model

    spec = parse_spec(QUICK)
    data = load_data(spec)
    inline = build_model(spec, data)
    fit(inline, data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed)
    ahead = build_model(spec, data)
    engine = ModelEngine(ahead, data.x_train, data.y_train, prefetch_bytes=0)  # every batch on the thread
    hits = []
    engine.close = lambda close=engine.close: (hits.append(engine.fetch.hits), close())
    run_phases(engine, data, plan(ahead.modules, ahead.layout, spec.pretrain, spec.train, len(data.y_train)), seed=spec.seed)
    np.testing.assert_array_equal(ahead.get_flat(), inline.get_flat())
    steps = sum(-(-len(data.y_train) // 20) * e for e in (1, 1, 4))
    assert hits[0] == steps - 6  # all but the first step of each of the 6 epochs came ready
