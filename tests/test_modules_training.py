"""The modules on real data (scikit-learn's digits): pretraining lowers every
unsupervised module's reconstruction error, and CNN, CRBM -> RBM and SC -> RBM stacks train
through xsharp.algos.fit well above chance (10 %)."""

from types import SimpleNamespace as Settings

import numpy as np
import pytest

from xsharp import backend
from xsharp.algos import Model, datasets, fit
from xsharp.algos.modules import build


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", seed=0)


@pytest.fixture(scope="module")
def small_digits():
    return datasets.load("digits", limit=600, seed=0)


def phase(**kw):
    return Settings(**(dict(epochs=3, batch_size=32, learning_rate=0.1, momentum=0.9, weight_decay=0.0) | kw))


PRETRAINABLE = [
    ("rbm", {"hidden": 64}, 0.1, False),
    ("rbm", {"hidden": 64, "persistent": True, "k": 3}, 0.1, False),
    ("rbm", {"hidden": 64, "visible": "gaussian"}, 0.1, True),
    ("rbm", {"hidden": 64, "visible": "gaussian", "persistent": True}, 0.1, True),
    ("autoencoder", {"hidden": 32, "sparsity_weight": 0.1, "sparsity_target": 0.05}, 0.5, False),
    ("autoencoder", {"hidden": 32, "sparsity_weight": 0.1, "corruption": 0.3}, 0.5, False),
    ("sparse_coding", {"atoms": 32, "iterations": 30}, 0.1, False),
    ("sparse_coding", {"atoms": 32, "iterations": 60, "algorithm": "ista"}, 0.1, False),
    ("crbm", {"filters": 8, "kernel": 3}, 0.5, False),
    ("crbm", {"filters": 4, "kernel": 4, "stride": 2, "k": 2}, 0.5, False),
]


@pytest.mark.parametrize("kind,options,lr,standardise", PRETRAINABLE, ids=lambda v: v if isinstance(v, str) else None)
def test_pretraining_lowers_the_reconstruction_error_on_digits(digits, kind, options, lr, standardise):
    x = digits.x_train
    if standardise:  # Gaussian units have unit variance
        x = (x - x.mean(axis=0)) / (x.std(axis=0) + 0.1)
    module = build(kind, options)
    params = module.init(np.random.default_rng(0), x.shape[1:])
    order = np.random.default_rng(1).permutation(len(x))
    errors = []
    for step in range(150):
        rows = order[(32 * step) % (len(x) - 32) :][:32]
        grads, error = module.pretrain_step(params, x[rows], backend.RowRNG(backend.rng((0, step))))
        for name, g in grads.items():
            params[name] -= lr * g
        errors.append(error)
    first, last = np.mean(errors[:5]), np.mean(errors[-5:])
    assert np.isfinite(errors).all()
    assert last < 0.8 * first, f"{kind} {options}: error {first:.3f} -> {last:.3f}"


STACKS = {
    "cnn": (
        [{"conv2d": {"filters": 8, "kernel": 3, "padding": 1}}, {"maxpool": {"size": 2}}, {"dense": {"units": 32}}, {"softmax": {}}],
        None,
        phase(epochs=10, learning_rate=0.05),
    ),
    "crbm-rbm": (
        [{"crbm": {"filters": 8, "kernel": 4, "stride": 2}}, {"rbm": {"hidden": 64}}, {"softmax": {}}],
        phase(epochs=20, learning_rate=0.3, momentum=0.5),
        phase(epochs=20, learning_rate=0.5),
    ),
    "sc-rbm": (  # real-valued codes feed Gaussian visible units; fine-tuning goes through the lasso solution
        [{"sparse_coding": {"atoms": 64, "iterations": 30}}, {"rbm": {"hidden": 64, "visible": "gaussian"}}, {"softmax": {}}],
        phase(epochs=5, learning_rate=0.02),
        phase(epochs=20, learning_rate=0.3),
    ),
    "cnn-batchnorm-dropout": (
        [
            {"conv2d": {"filters": 8, "kernel": 3, "padding": 1}},
            {"batchnorm": {}},
            {"avgpool": {"size": 2}},
            {"dropout": {"rate": 0.2}},
            {"dense": {"units": 32}},
            {"softmax": {}},
        ],
        None,
        phase(epochs=10, learning_rate=0.05),
    ),
}


@pytest.mark.parametrize("name", list(STACKS))
def test_convolutional_stacks_train_through_fit(small_digits, name):
    layers, pretrain, train = STACKS[name]
    model = Model(layers, small_digits.in_shape, small_digits.n_classes, seed=0)
    history = fit(model, small_digits, pretrain=pretrain, train=train, seed=0)
    if pretrain is not None:
        assert len(history.pretrain) == 2 * pretrain.epochs  # both unsupervised layers were pretrained
    accuracy = model.accuracy(small_digits.x_test, small_digits.y_test)
    print(f"{name}: test accuracy {accuracy:.3f} in {history.seconds:.2f} s")
    assert accuracy > 0.85
