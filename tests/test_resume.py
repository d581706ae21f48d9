"""Stopping at any step boundary and resuming ends exactly where an uninterrupted run ends."""

import numpy as np
import pytest

from xsharp.algos import datasets
from xsharp.algos.training import Stopped, TrainHooks, fit
from xsharp.parallel.execution import build_model
from xsharp.spec import parse_spec


@pytest.fixture(scope="module")
def setup():
    from tests.helpers import TINY

    spec = parse_spec(TINY | {"data": {"dataset": "digits", "limit": 300}})
    data = datasets.load("digits", limit=300, seed=spec.seed)
    model = build_model(spec, data)
    history = fit(model, data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed)
    return spec, data, model.get_flat(), history


@pytest.mark.parametrize(
    "stops",
    [[1], [5], [11], [22], [11, 11], [40, 3, 100], [280]],
    ids=lambda s: "+".join(map(str, s)),
)  # 216 training rows, 11 steps an epoch: 11 and 22 stop at epoch ends; 66 pretraining steps, 220 fine-tuning
def test_stopped_and_resumed_runs_end_bitwise_equal(setup, stops):
    spec, data, expected, full = setup
    assert len(data.y_train) == 216
    state = None
    for at in stops:
        model = build_model(spec, data)
        counter = {"n": 0}

        def should_stop(at=at, counter=counter):
            counter["n"] += 1
            return counter["n"] == at

        with pytest.raises(Stopped) as e:
            fit(model, data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed, hooks=TrainHooks(should_stop=should_stop, resume=state))
        state = e.value.state
        assert state is not None and not np.array_equal(state.flat, expected)
    model = build_model(spec, data)
    history = fit(model, data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed, hooks=TrainHooks(resume=state))
    np.testing.assert_array_equal(model.get_flat(), expected)
    assert history.samples == full.samples
    assert [h["epoch"] for h in history.finetune] == list(range(1, 21))
    assert [round(h["loss"], 6) for h in history.finetune] == [round(h["loss"], 6) for h in full.finetune]
    assert len(history.resumed_from) == len(stops)


def test_periodic_checkpoints_resume_too(setup):
    spec, data, expected, _ = setup
    states = []
    model = build_model(spec, data)
    fit(model, data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed, hooks=TrainHooks(on_checkpoint=states.append, checkpoint_every=0))
    assert len(states) > 100  # one per step
    positions = [(s.phase, s.epoch, s.step) for s in states]
    assert positions == sorted(positions)
    middle = states[len(states) // 2]  # as if the worker died right after this checkpoint
    model = build_model(spec, data)
    fit(model, data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed, hooks=TrainHooks(resume=middle))
    np.testing.assert_array_equal(model.get_flat(), expected)
