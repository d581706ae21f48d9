"""Adam, learning-rate schedules and building an optimiser from a spec's phase (optim.py alone)."""

import math

import numpy as np
import pytest

from xsharp.algos import optim
from xsharp.spec import TrainSpec


def test_adam_follows_the_formula_with_decoupled_masked_decay():
    p = np.array([1.0, -2.0], np.float32)
    opt = optim.Adam(learning_rate=0.1, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.5, mask=np.array([1.0, 0.0], np.float32))
    state = opt.init(p)
    assert state.shape == (5,)  # [m, v, t]: one flat buffer, checkpointed like SGD's velocity
    m = v = np.zeros(2)
    for t, g in enumerate([np.array([0.3, -0.1]), np.array([0.1, 0.2])], start=1):
        g = g.astype(np.float32)
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        expected = -0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-8) - 0.1 * 0.5 * p * [1, 0]
        upd, state = opt.update(g, state, p)
        np.testing.assert_allclose(upd, expected, rtol=1e-5)
        optim.apply_updates(p, upd)
    assert state[-1] == 2


def test_adam_minimises_a_badly_scaled_quadratic():
    scales = np.array([1.0, 100.0], np.float32)
    p = np.array([3.0, 3.0], np.float32)
    opt = optim.Adam(learning_rate=0.05)
    state = opt.init(p)
    for _ in range(500):
        upd, state = opt.update(scales * p, state, p)
        optim.apply_updates(p, upd)
    assert np.abs(p).max() < 0.05


def test_schedules_give_the_learning_rate_of_each_step():
    assert optim.step_decay(1.0, every=10, gamma=0.5)(np.array(25.0)) == 0.25
    np.testing.assert_allclose(optim.exponential_decay(2.0, every=10, gamma=0.5)(np.array(5.0)), 2.0 * 0.5**0.5)
    cos = optim.cosine_decay(1.0, total=100, final=0.1)
    np.testing.assert_allclose([cos(np.array(t)) for t in (0, 50, 100, 150)], [1.0, 0.55, 0.1, 0.1], atol=1e-6)
    warm = optim.warmup(optim.constant(0.4), steps=4)
    np.testing.assert_allclose([warm(np.array(float(t))) for t in range(6)], [0.1, 0.2, 0.3, 0.4, 0.4, 0.4])


def test_sgd_with_a_schedule_counts_steps_in_its_state():
    p = np.zeros(3, np.float32)
    opt = optim.SGD(optim.step_decay(1.0, every=1, gamma=0.5), momentum=0.0)
    state = opt.init(p)
    assert state.shape == (4,)
    g = np.ones(3, np.float32)
    steps = []
    for _ in range(3):
        upd, state = opt.update(g, state, p)
        steps.append(float(upd[0]))
    assert steps == [-1.0, -0.5, -0.25] and state[-1] == 3
    resumed = optim.SGD(optim.step_decay(1.0, every=1, gamma=0.5))
    upd, _ = resumed.update(g, state.copy(), p)  # a state restored from a checkpoint goes on at step 3
    assert float(upd[0]) == -0.125


def test_build_from_a_spec_phase():
    spe = 10  # steps per epoch
    plain = optim.build(TrainSpec(learning_rate=0.1, momentum=0.9), steps_per_epoch=spe)
    assert isinstance(plain, optim.SGD) and plain.learning_rate == 0.1  # constant: SGD exactly as before
    assert plain.init(np.zeros(4, np.float32)).shape == (4,)
    adam = optim.build(
        TrainSpec(optimizer="adam", learning_rate=0.01, beta2=0.98, weight_decay=0.0, epochs=5, schedule={"kind": "cosine"}), steps_per_epoch=spe
    )
    assert isinstance(adam, optim.Adam) and adam.beta2 == 0.98
    np.testing.assert_allclose([adam.learning_rate(np.array(t)) for t in (0, 25, 50)], [0.01, 0.005, 0.0], atol=1e-9)
    step = optim.build(
        TrainSpec(learning_rate=1.0, epochs=9, schedule={"kind": "step", "every_epochs": 3, "gamma": 0.1, "warmup_epochs": 1}), steps_per_epoch=spe
    )
    lr = step.learning_rate
    assert math.isclose(float(lr(np.array(4.0))), 0.5) and math.isclose(float(lr(np.array(31.0))), 0.1, rel_tol=1e-6)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_training_a_softmax_with_either_optimiser(kind):
    """The optimisers drive a real model's flat gradient the way training.py does."""
    from xsharp.algos import Model, datasets

    data = datasets.load("digits", seed=0, limit=600)
    model = Model([{"softmax": {}}], data.in_shape, data.n_classes, seed=0)
    settings = TrainSpec(optimizer=kind, learning_rate=0.01 if kind == "adam" else 0.1, momentum=0.9, epochs=10, schedule={"kind": "cosine"})
    steps = -(-len(data.y_train) // 32)
    opt = optim.build(settings, model.layout.decay_mask(model.xp, model.flat.dtype), steps)
    state = opt.init(model.flat)
    rng = np.random.default_rng(0)
    for _ in range(settings.epochs):
        order = rng.permutation(len(data.y_train))
        for s in range(steps):
            rows = order[s * 32 : (s + 1) * 32]
            _, grad = model.loss_and_grad(data.x_train[rows], data.y_train[rows])
            upd, state = opt.update(grad, state, model.flat)
            optim.apply_updates(model.flat, upd)
    assert model.accuracy(data.x_test, data.y_test) > 0.9


@pytest.mark.parametrize(
    "opt, blocks",
    [(optim.SGD(0.1, 0.9), (1, 0)), (optim.SGD(optim.constant(0.1), 0.9), (1, 1)), (optim.Adam(), (2, 1))],
    ids=["sgd", "sgd-scheduled", "adam"],
)
def test_each_optimiser_declares_its_state_layout_and_the_parts_join_back(opt, blocks):
    layout = opt.state_layout
    assert (layout.per_parameter, layout.scalars) == blocks
    assert opt.init(np.zeros(5, np.float32)).shape == (layout.size(5),)
    state = np.arange(layout.size(5), dtype=np.float32)
    parts = layout.split(state, [2, 3])  # two parameter shards, each with its own copy of the scalars
    assert [p.shape[0] for p in parts] == [layout.size(2), layout.size(3)]
    np.testing.assert_array_equal(parts[1][: 3 * blocks[0]], np.concatenate([state[b * 5 + 2 : b * 5 + 5] for b in range(blocks[0])]))
    np.testing.assert_array_equal(layout.join(parts, [2, 3]), state)
