"""Analytic gradients against central finite differences, in float64."""

import numpy as np
import pytest

from xsharp.algos import Model
from xsharp.algos.modules import build, nll_loss

EPS = 1e-6


def numeric_grad(f, array: np.ndarray) -> np.ndarray:
    g = np.zeros_like(array)
    it = np.nditer(array, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = array[i]
        array[i] = old + EPS
        up = f()
        array[i] = old - EPS
        down = f()
        array[i] = old
        g[i] = (up - down) / (2 * EPS)
    return g


def setup(kind, options, in_shape=(3, 2), n=5, seed=0):
    rng = np.random.default_rng(seed)
    module = build(kind, options)
    params = {k: v.astype(np.float64) for k, v in module.init(rng, in_shape).items()}
    for v in params.values():  # biases start at zero; move them so their gradients are exercised
        v += 0.1 * rng.standard_normal(v.shape)
    x = rng.random((n, *in_shape))
    return module, params, x, rng


LAYERS = [
    ("dense", {"units": 4, "activation": "sigmoid"}),
    ("dense", {"units": 4, "activation": "tanh"}),
    ("dense", {"units": 4, "activation": "relu"}),
    ("dense", {"units": 4, "activation": "linear"}),
    ("rbm", {"hidden": 4}),
    ("autoencoder", {"hidden": 4, "activation": "sigmoid"}),
    ("autoencoder", {"hidden": 4, "activation": "tanh"}),
]


@pytest.mark.parametrize("kind,options", LAYERS, ids=lambda v: v if isinstance(v, str) else v.get("activation", ""))
def test_layer_backward_matches_finite_differences(kind, options):
    module, params, x, rng = setup(kind, options)
    r = rng.standard_normal((x.shape[0], options.get("units", options.get("hidden"))))

    def loss():
        return float((module.forward(params, x)[0] * r).sum())

    y, cache = module.forward(params, x, train=True)
    grads, dx = module.backward(params, cache, r)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-7)
    for name, p in params.items():
        expected = numeric_grad(loss, p)
        got = grads.get(name, np.zeros_like(p))  # a parameter the layer does not use has zero gradient
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7, err_msg=f"{kind}.{name}")


def test_softmax_with_nll_matches_finite_differences():
    module, params, x, rng = setup("softmax", {"units": 3})
    labels = rng.integers(0, 3, size=x.shape[0])

    def loss():
        return nll_loss(module.forward(params, x)[0], labels)[0]

    logp, cache = module.forward(params, x, train=True)
    np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1.0, rtol=1e-12)
    _, dlogp = nll_loss(logp, labels)
    grads, dx = module.backward(params, cache, dlogp)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-8)
    for name, p in params.items():
        np.testing.assert_allclose(grads[name], numeric_grad(loss, p), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_autoencoder_pretraining_gradient_is_that_of_its_reconstruction_error(activation):
    module, params, x, _ = setup("autoencoder", {"hidden": 4, "activation": activation})

    def loss():
        return module.pretrain_step(params, x, None)[1]

    grads, _ = module.pretrain_step(params, x, None)
    for name, p in params.items():
        np.testing.assert_allclose(grads[name], numeric_grad(loss, p), rtol=1e-5, atol=1e-8, err_msg=name)


def test_whole_mixed_model_gradient_over_the_flat_buffer():
    layers = [{"rbm": {"hidden": 5}}, {"autoencoder": {"hidden": 4}}, {"dense": {"units": 3, "activation": "tanh"}}, {"softmax": {}}]
    model = Model(layers, (2, 3), 3, seed=1, dtype=np.float64)
    rng = np.random.default_rng(2)
    model.flat += 0.1 * rng.standard_normal(model.flat.shape)
    x, labels = rng.random((6, 2, 3)), rng.integers(0, 3, size=6)

    def loss():
        return nll_loss(model.forward(x)[0], labels)[0]

    _, grad = model.loss_and_grad(x, labels)
    expected = numeric_grad(loss, model.flat)
    # RBM visible biases and the AE decoder bias play no part in classification
    unused = [e for e in model.layout.entries if e.name in ("b_v", "c")]
    for e in unused:
        np.testing.assert_array_equal(grad[e.offset : e.offset + e.size], 0)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-8)
