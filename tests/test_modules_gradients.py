"""Finite-difference checks, in float64, for every module beyond those of test_gradients.py
(dense, softmax, RBM, auto-encoder): backward for the input and every parameter, and the pretraining objectives that
are true gradients (sparse auto-encoder, sparse-coding dictionary with codes fixed)."""

import numpy as np
import pytest

from tests.test_gradients import numeric_grad, setup
from xsharp import backend
from xsharp.algos import Model
from xsharp.algos.modules import build, nll_loss
from xsharp.algos.modules.sparse_coding import normalise_rows

TOL = dict(rtol=1e-5, atol=1e-7)


def fixed_rng(seed=7):
    """A RowRNG that draws the same numbers each time it is made: dropout masks stay put."""
    return backend.RowRNG(np.random.default_rng(seed))


def check_backward(kind, options, in_shape, n=4, train=True, seed=0, rng_seed=None, frozen=()):
    """backward() against central differences of sum(forward(x) * r), for x and every parameter."""
    module, params, x, rng = setup(kind, options, in_shape, n, seed)
    make_rng = (lambda: fixed_rng(rng_seed)) if rng_seed is not None else (lambda: None)
    y, cache = module.forward(params, x, train=train, rng=make_rng())
    r = rng.standard_normal(y.shape)

    def loss():
        return float((module.forward(params, x, train=train, rng=make_rng())[0] * r).sum())

    grads, dx = module.backward(params, cache, r)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, numeric_grad(loss, x), **TOL, err_msg=f"{kind}: dx")
    for name, p in params.items():
        got = grads.get(name, np.zeros_like(p))
        if name in frozen:  # non-trainable state: zero gradient by design
            np.testing.assert_array_equal(got, 0)
            continue
        np.testing.assert_allclose(got, numeric_grad(loss, p), **TOL, err_msg=f"{kind}.{name}")
    return module, params


CASES = [
    ("conv2d", {"filters": 3, "kernel": 3, "padding": 1, "activation": "tanh"}, (2, 5, 6)),
    ("conv2d", {"filters": 3, "kernel": 3, "stride": 2, "padding": 1, "activation": "relu"}, (2, 5, 6)),
    ("conv2d", {"filters": 2, "kernel": 2, "activation": "sigmoid"}, (4, 5)),  # (H, W): one channel
    ("maxpool", {"size": 2}, (2, 4, 5)),
    ("maxpool", {"size": 3, "stride": 1}, (4, 4)),  # overlapping windows
    ("avgpool", {"size": 2}, (2, 4, 5)),
    ("avgpool", {"size": 3, "stride": 2}, (5, 5)),
    ("crbm", {"filters": 3, "kernel": 2}, (2, 4, 4)),
    ("crbm", {"filters": 2, "kernel": 3, "stride": 2}, (5, 5)),
]


@pytest.mark.parametrize("kind,options,in_shape", CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_backward_matches_finite_differences(kind, options, in_shape):
    check_backward(kind, options, in_shape)


@pytest.mark.parametrize("in_shape", [(5,), (3, 3, 2), (3, 4)], ids=["features", "channels", "one-channel"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batchnorm_backward_in_training_and_evaluation(in_shape, train):
    check_backward("batchnorm", {}, in_shape, n=5, train=train, frozen=("running_mean", "running_var"))


def test_dropout_backward_with_its_mask():
    check_backward("dropout", {"rate": 0.4}, (3, 4), n=6, rng_seed=3)


@pytest.mark.parametrize("algorithm", ["ista", "fista"])
@pytest.mark.parametrize("atoms,l1_weight", [(4, 0.05), (9, 0.2)], ids=["undercomplete", "overcomplete"])
def test_sparse_coding_backward_differentiates_the_converged_codes(algorithm, atoms, l1_weight):
    """Implicit differentiation on the active set is the exact derivative of the lasso
    solution, so with a converged solver it matches finite differences for x and D."""
    options = {"atoms": atoms, "l1_weight": l1_weight, "algorithm": algorithm, "iterations": 600 if algorithm == "fista" else 1200}
    module, params = check_backward("sparse_coding", options, (3, 2), n=5)
    z = module.forward(params, setup("sparse_coding", options, (3, 2), 5)[2])[0]
    assert 0 < (z == 0).mean() < 1  # the check covered both active and inactive atoms


@pytest.mark.parametrize("corruption", [0.0, 0.3])
def test_sparse_autoencoder_gradient_includes_the_sparsity_penalty(corruption):
    options = {"hidden": 4, "sparsity_target": 0.1, "sparsity_weight": 0.5, "corruption": corruption}
    module, params, x, _ = setup("autoencoder", options)

    def objective():
        return module.pretrain_objective(params, x, fixed_rng())

    grads, error = module.pretrain_step(params, x, fixed_rng())
    assert objective() > error > 0  # the penalty is part of the objective, not of the reported error
    for name, p in params.items():
        np.testing.assert_allclose(grads[name], numeric_grad(objective, p), rtol=1e-5, atol=1e-8, err_msg=name)


def test_sparse_coding_dictionary_step_is_the_reconstruction_gradient_with_codes_fixed():
    module, params, x, _ = setup("sparse_coding", {"atoms": 5, "l1_weight": 0.05, "iterations": 300}, (3, 2), n=6)
    grads, error = module.pretrain_step(params, x, None)  # also writes unit-norm atoms back
    codes = module.forward(params, x)[0]
    x2 = x.reshape(len(x), -1)

    def reconstruction_error():
        atoms, _ = normalise_rows(params["D"])
        return 0.5 * float(((codes @ atoms - x2) ** 2).sum()) / len(x)

    assert error == pytest.approx(reconstruction_error(), rel=1e-9)
    np.testing.assert_allclose(grads["D"], numeric_grad(reconstruction_error, params["D"]), rtol=1e-5, atol=1e-9)


def test_crbm_with_a_kernel_as_large_as_the_image_is_an_rbm():
    """One window position: the CRBM's CD-1 step equals a dense RBM's on the same numbers."""
    rng = np.random.default_rng(0)
    x = rng.random((5, 4, 4))
    W = 0.5 * rng.standard_normal((3, 1, 4, 4))
    b_h = rng.standard_normal(3)
    crbm, rbm = build("crbm", {"filters": 3, "kernel": 4}), build("rbm", {"hidden": 3})
    g_c, err_c = crbm.pretrain_step({"W": W, "b_h": b_h, "b_v": np.zeros(1)}, x, fixed_rng(1))
    g_r, err_r = rbm.pretrain_step({"W": W.reshape(3, 16).T.copy(), "b_h": b_h, "b_v": np.zeros(16)}, x, fixed_rng(1))
    np.testing.assert_allclose(g_c["W"].reshape(3, 16).T, g_r["W"], rtol=1e-12)
    np.testing.assert_allclose(g_c["b_h"], g_r["b_h"], rtol=1e-12)
    assert g_c["b_v"][0] == pytest.approx(g_r["b_v"].mean())  # one visible bias per channel
    assert err_c == pytest.approx(err_r)


def test_crbm_cd1_on_several_channels_matches_the_formulas_written_out():
    """CD-1 statistics of a 2-channel CRBM with stride 2, against loops over window positions:
    catches any mix-up of channel and kernel-offset order in the fast path."""
    rng = np.random.default_rng(3)
    n, c, f, k, s, size = 3, 2, 3, 3, 2, 7
    v0 = rng.random((n, c, size, size))
    W, b_h, b_v = 0.5 * rng.standard_normal((f, c, k, k)), rng.standard_normal(f), rng.standard_normal(c)
    crbm = build("crbm", {"filters": f, "kernel": k, "stride": s})
    grads, error = crbm.pretrain_step({"W": W, "b_h": b_h, "b_v": b_v}, v0, fixed_rng(2))

    o = (size - k) // s + 1
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731

    def up(v):  # p(h | v): (n, f, o, o)
        z = np.zeros((n, f, o, o))
        for a in range(o):
            for b in range(o):
                z[:, :, a, b] = np.einsum("ncij,fcij->nf", v[:, :, a * s : a * s + k, b * s : b * s + k], W)
        return sig(z + b_h[:, None, None])

    def down(h):  # p(v | h): (n, c, size, size)
        z = np.zeros((n, c, size, size))
        for a in range(o):
            for b in range(o):
                z[:, :, a * s : a * s + k, b * s : b * s + k] += np.einsum("nf,fcij->ncij", h[:, :, a, b], W)
        return sig(z + b_v[:, None, None])

    def stats(h, v):  # sum over samples and positions of h * window: (f, c, k, k)
        return sum(np.einsum("nf,ncij->fcij", h[:, :, a, b], v[:, :, a * s : a * s + k, b * s : b * s + k]) for a in range(o) for b in range(o))

    ph0 = up(v0)
    h0 = (fixed_rng(2).random(ph0.shape, dtype=ph0.dtype) < ph0).astype(ph0.dtype)
    pv = down(h0)
    ph1 = up(pv)
    np.testing.assert_allclose(grads["W"], -(stats(ph0, v0) - stats(ph1, pv)) / (n * o * o), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["b_h"], -(ph0 - ph1).sum(axis=(0, 2, 3)) / (n * o * o), rtol=1e-10)
    np.testing.assert_allclose(grads["b_v"], -(v0 - pv).sum(axis=(0, 2, 3)) / (n * size * size), rtol=1e-10)
    assert error == pytest.approx(float(((v0 - pv) ** 2).sum()) / n, rel=1e-10)


def test_whole_cnn_gradient_over_the_flat_buffer():
    layers = [
        {"conv2d": {"filters": 3, "kernel": 3, "padding": 1, "activation": "tanh"}},
        {"batchnorm": {}},
        {"maxpool": {"size": 2}},
        {"dropout": {"rate": 0.3}},
        {"crbm": {"filters": 2, "kernel": 2}},
        {"avgpool": {"size": 2, "stride": 1}},
        {"dense": {"units": 4, "activation": "sigmoid"}},
        {"softmax": {}},
    ]
    model = Model(layers, (6, 6), 3, seed=1, dtype=np.float64)
    rng = np.random.default_rng(2)
    model.flat += 0.1 * rng.standard_normal(model.flat.shape)
    x, labels = rng.random((5, 6, 6)), rng.integers(0, 3, size=5)

    def loss():
        return nll_loss(model.forward(x, train=True, rng=fixed_rng())[0], labels)[0]

    _, grad = model.loss_and_grad(x, labels, fixed_rng())
    grad = grad.copy()
    expected = numeric_grad(loss, model.flat)
    frozen = [e for e in model.layout.entries if e.name in ("running_mean", "running_var", "b_v")]
    for e in frozen:  # running statistics and visible biases do not enter the training loss
        np.testing.assert_array_equal(grad[e.offset : e.offset + e.size], 0)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-8)
