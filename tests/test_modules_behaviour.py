"""What modules do besides their gradients: dropout and batch norm in training and
evaluation, the persistent-CD chain, Gaussian visible units, sparse codes, shapes, and the
spec errors their options give."""

import numpy as np
import pytest

from xsharp import backend
from xsharp.algos import Model
from xsharp.algos.modules import build
from xsharp.spec import SpecError, parse_spec


def row_rng(seed, offset=0, total=None):
    return backend.RowRNG(np.random.default_rng(seed), offset, total)


# --------------------------------------------------------------------------- dropout
def test_dropout_is_the_identity_in_evaluation_and_inverted_in_training():
    drop = build("dropout", {"rate": 0.25})
    x = np.random.default_rng(0).random((400, 50)).astype(np.float32) + 1
    y, _ = drop.forward({}, x, train=False)
    assert y is x
    y, mask = drop.forward({}, x, train=True, rng=row_rng(1))
    zeroed = y == 0
    assert 0.22 < zeroed.mean() < 0.28
    np.testing.assert_allclose(y[~zeroed], x[~zeroed] / 0.75, rtol=1e-6)  # survivors scaled: E[y] = x
    assert abs(float(y.mean() / x.mean()) - 1) < 0.02
    _, dx = drop.backward({}, mask, np.ones_like(x))
    np.testing.assert_array_equal(dx == 0, zeroed)
    with pytest.raises(ValueError, match="random generator"):
        drop.forward({}, x, train=True)


def test_dropout_masks_of_data_parallel_shards_are_the_single_worker_mask():
    drop = build("dropout", {"rate": 0.5})
    x = np.ones((10, 6), np.float32)
    whole, _ = drop.forward({}, x, train=True, rng=row_rng(5))
    parts = [drop.forward({}, x[lo:hi], train=True, rng=row_rng(5, lo, 10))[0] for lo, hi in ((0, 4), (4, 10))]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


# --------------------------------------------------------------------------- batch norm
@pytest.mark.parametrize("in_shape,axes", [((6,), (0,)), ((3, 4, 5), (0, 2, 3))], ids=["features", "channels"])
def test_batchnorm_normalises_in_training_and_keeps_running_statistics(in_shape, axes):
    bn = build("batchnorm", {"momentum": 0.2})
    params = bn.init(np.random.default_rng(0), in_shape)
    rng = np.random.default_rng(1)
    x = (3 + 2 * rng.standard_normal((64, *in_shape))).astype(np.float32)
    y, _ = bn.forward(params, x, train=True)
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=axes), 1, atol=1e-3)
    count = x.size // params["gamma"].size  # values behind each statistic
    np.testing.assert_allclose(params["running_mean"], 0.2 * x.mean(axis=axes), rtol=1e-5)
    np.testing.assert_allclose(params["running_var"], 0.8 + 0.2 * x.var(axis=axes) * count / (count - 1), rtol=1e-5)
    for _ in range(60):  # the running averages converge to the data's statistics
        bn.forward(params, x, train=True)
    np.testing.assert_allclose(params["running_mean"], x.mean(axis=axes), rtol=1e-3)
    # evaluation uses the running statistics, not the batch's: one sample gives the same answer alone
    y_eval, _ = bn.forward(params, x, train=False)
    y_one, _ = bn.forward(params, x[:1], train=False)
    np.testing.assert_allclose(y_one, y_eval[:1], rtol=1e-5)
    np.testing.assert_allclose(y_eval, y, rtol=0.01, atol=0.02)  # running_var is unbiased, the batch's is not


def test_batchnorm_running_statistics_live_in_the_flat_buffer_and_are_never_trained():
    model = Model([{"batchnorm": {}}, {"dense": {"units": 4}}, {"softmax": {}}], (5,), 3)
    stats = [e for e in model.layout.entries if e.name.startswith("running_")]
    assert [e.name for e in stats] == ["running_mean", "running_var"]
    rng = np.random.default_rng(0)
    x, labels = (5 + rng.standard_normal((32, 5))).astype(np.float32), rng.integers(0, 3, 32)
    _, grad = model.loss_and_grad(x, labels)
    mean = stats[0]
    assert np.all(model.flat[mean.offset : mean.offset + mean.size] > 0.4)  # forward(train=True) moved them in place
    for e in stats:
        assert not grad[e.offset : e.offset + e.size].any()
        assert not model.layout.decay_mask(np, np.float32)[e.offset : e.offset + e.size].any()  # nor decayed


# --------------------------------------------------------------------------- RBM: persistent CD, Gaussian units
def test_persistent_chain_carries_over_and_restarts_when_the_batch_size_changes():
    rbm = build("rbm", {"hidden": 8, "persistent": True})
    params = rbm.init(np.random.default_rng(0), (12,))
    params["W"] *= 300  # strong weights: the chain's next state depends on where it is
    x = (np.random.default_rng(1).random((6, 12)) > 0.5).astype(np.float32)
    assert rbm.chain is None
    rbm.pretrain_step(params, x, row_rng(1))
    first = rbm.chain.copy()
    assert first.shape == x.shape and set(np.unique(first)) <= {0.0, 1.0}  # sampled binary visible states
    rbm.pretrain_step(params, np.zeros_like(x), row_rng(2))
    second = rbm.chain.copy()
    # the negative phase went on from the previous chain, not from this (all-zero) batch
    plain = build("rbm", {"hidden": 8, "persistent": True})
    plain.pretrain_step(params, np.zeros_like(x), row_rng(2))
    assert not np.array_equal(second, plain.chain)
    rbm.pretrain_step(params, x[:4], row_rng(3))  # a short batch: a fresh chain from these rows
    fresh = build("rbm", {"hidden": 8, "persistent": True})
    fresh.pretrain_step(params, x[:4], row_rng(3))
    np.testing.assert_array_equal(rbm.chain, fresh.chain)


def test_persistent_cd_on_data_parallel_shards_matches_one_worker():
    """Each worker keeps the chain of its rows and draws its rows of the batch's random
    numbers, so averaged shard gradients are the single-worker gradient, step after step."""
    x = (np.random.default_rng(1).random((3, 10, 12)) > 0.6).astype(np.float64)
    one = build("rbm", {"hidden": 5, "persistent": True})
    shards = [build("rbm", {"hidden": 5, "persistent": True}) for _ in range(2)]
    p_one = {k: v.astype(np.float64) for k, v in one.init(np.random.default_rng(0), (12,)).items()}
    p_two = {k: v.copy() for k, v in p_one.items()}
    for step in range(3):
        g, _ = one.pretrain_step(p_one, x[step], row_rng(step))
        parts = [(m.pretrain_step(p_two, x[step][lo:hi], row_rng(step, lo, 10))[0], (hi - lo) / 10) for m, (lo, hi) in zip(shards, ((0, 3), (3, 10)))]
        for k in p_one:
            avg = sum(w * part[k] for part, w in parts)
            np.testing.assert_allclose(avg, g[k], rtol=1e-10, atol=1e-12)
            p_one[k] -= 0.5 * g[k]
            p_two[k] -= 0.5 * avg
    np.testing.assert_allclose(np.concatenate([m.chain for m in shards]), one.chain)


def test_gaussian_visible_units_reconstruct_linearly():
    rbm = build("rbm", {"hidden": 3, "visible": "gaussian"})
    params = {"W": 2 * np.ones((4, 3)), "b_h": np.zeros(3), "b_v": np.full(4, -1.0)}
    h = np.array([[1.0, 1.0, 0.0]])
    np.testing.assert_allclose(rbm.visible_mean(params, h), [[3.0, 3.0, 3.0, 3.0]])  # h W^T + b_v, no sigmoid
    samples = rbm.sample_visible(np.zeros((2000, 4)), row_rng(0))
    assert abs(samples.std() - 1) < 0.05  # unit variance
    bernoulli = build("rbm", {"hidden": 3})
    assert bernoulli.visible_mean(params, h).max() < 1


# --------------------------------------------------------------------------- sparse coding
def lasso_objective(x, z, atoms, l1):
    return 0.5 * ((x - z @ atoms) ** 2).sum(axis=1) + l1 * np.abs(z).sum(axis=1)


def test_sparse_codes_solve_the_lasso_and_fista_gets_there_first():
    rng = np.random.default_rng(0)
    x = rng.random((20, 16))
    options = {"atoms": 24, "l1_weight": 0.3}
    module = build("sparse_coding", options)
    params = {k: v.astype(np.float64) for k, v in module.init(rng, (16,)).items()}
    atoms = params["D"]
    np.testing.assert_allclose(np.linalg.norm(atoms, axis=1), 1)
    z = {alg: build("sparse_coding", options | {"algorithm": alg, "iterations": 2000}).forward(params, x)[0] for alg in ("ista", "fista")}
    np.testing.assert_allclose(z["ista"], z["fista"], atol=1e-6)  # one convex problem, one minimum
    assert (z["fista"] == 0).mean() > 0.5  # sparse
    # at the minimum: D_j (x - z D) = l1 sign(z_j) on the active set, |.| <= l1 off it
    corr = (x - z["fista"] @ atoms) @ atoms.T
    active = z["fista"] != 0
    np.testing.assert_allclose(corr[active], 0.3 * np.sign(z["fista"][active]), atol=1e-6)
    assert np.abs(corr[~active]).max() <= 0.3 + 1e-6
    few = {alg: build("sparse_coding", options | {"algorithm": alg, "iterations": 15}).forward(params, x)[0] for alg in ("ista", "fista")}
    assert lasso_objective(x, few["fista"], atoms, 0.3).sum() < lasso_objective(x, few["ista"], atoms, 0.3).sum()


def test_sparse_coding_pretraining_keeps_atoms_at_unit_norm():
    module = build("sparse_coding", {"atoms": 6, "iterations": 20})
    params = module.init(np.random.default_rng(0), (8,))
    params["D"] *= 3  # as if an optimiser step had moved them off the sphere
    x = np.random.default_rng(1).random((10, 8)).astype(np.float32)
    codes_before = module.forward(params, x)[0]  # the layer always codes over unit-norm atoms
    grads, _ = module.pretrain_step(params, x, None)
    np.testing.assert_allclose(np.linalg.norm(params["D"], axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(module.forward(params, x)[0], codes_before, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose((grads["D"] * params["D"]).sum(axis=1), 0, atol=1e-6)  # tangent to the sphere


# --------------------------------------------------------------------------- shapes and spec errors
def test_image_modules_accept_one_channel_images_and_report_shapes():
    layers = [
        {"conv2d": {"filters": 4, "kernel": 3, "padding": 1}},
        {"maxpool": {}},
        {"crbm": {"filters": 2, "kernel": 2}},
        {"avgpool": {"size": 3}},
        {"softmax": {}},
    ]
    model = Model(layers, (8, 8), 3)
    assert model.shapes() == [(8, 8), (4, 8, 8), (4, 4, 4), (2, 3, 3), (2, 1, 1), (3,)]
    assert model.predict_proba(np.zeros((2, 8, 8), np.float32)).shape == (2, 3)
    assert build("conv2d", {"filters": 2, "kernel": 3, "stride": 2}).output_shape((3, 9, 7)) == (2, 4, 3)
    assert build("maxpool", {"size": 2}).output_shape((5, 5)) == (2, 2)  # keeps the input's rank
    with pytest.raises(ValueError, match="conv2d: a 5x5 window does not fit a 4x4 input"):
        Model([{"conv2d": {"filters": 2, "kernel": 5}}, {"softmax": {}}], (4, 4), 2)
    with pytest.raises(ValueError, match=r"maxpool needs image inputs \(C, H, W\) or \(H, W\), got shape \(16,\)"):
        Model([{"maxpool": {}}, {"softmax": {}}], (16,), 2)


@pytest.mark.parametrize(
    "layer,message",
    [
        ({"dropout": {"rate": 1.0}}, "model[0].dropout.rate: must be < 1.0, got 1.0"),
        ({"batchnorm": {"momentum": 0}}, "model[0].batchnorm.momentum: must be > 0.0, got 0"),
        ({"rbm": {"hidden": 4, "visible": "poisson"}}, "model[0].rbm.visible: must be one of 'bernoulli' or 'gaussian', got 'poisson'"),
        ({"rbm": {"hidden": 4, "persistent": "often"}}, "model[0].rbm.persistent: must be true or false, got 'often'"),
        ({"autoencoder": {"hidden": 4, "sparsity_target": 1.5}}, "model[0].autoencoder.sparsity_target: must be < 1.0, got 1.5"),
        (
            {"autoencoder": {"hidden": 4, "activation": "relu", "sparsity_weight": 0.1}},
            "model[0].autoencoder: the sparsity penalty needs activation: sigmoid (mean activations in (0, 1)), got relu",
        ),
        ({"sparse_coding": {"atoms": 8, "algorithm": "omp"}}, "model[0].sparse_coding.algorithm: must be one of 'ista' or 'fista', got 'omp'"),
        ({"sparse_coding": {"atoms": 8, "l1_weight": -1}}, "model[0].sparse_coding.l1_weight: must be > 0.0, got -1"),
        ({"conv2d": {"filters": 4, "kernal": 3}}, "model[0].conv2d.kernal: unknown field; did you mean 'kernel'?"),
        ({"maxpool": {"size": 0}}, "model[0].maxpool.size: must be > 0, got 0"),
        ({"crbm": {"kernel": 3}}, "model[0].crbm.filters: is required"),
    ],
)
def test_bad_options_are_spec_errors_naming_the_field(layer, message):
    with pytest.raises(SpecError) as e:
        parse_spec({"data": {"dataset": "digits"}, "model": [layer, "softmax"]})
    assert e.value.problems == [message]


def test_new_options_round_trip_through_a_spec():
    spec = parse_spec({"data": {"dataset": "digits"}, "model": [{"rbm": {"hidden": 4, "persistent": True, "visible": "gaussian"}}, "softmax"]})
    assert spec.layers[0] == {"rbm": {"hidden": 4, "k": 1, "visible": "gaussian", "persistent": True}}
    assert parse_spec(spec.to_dict()) == spec


def test_maxpool_gives_a_tied_window_gradient_to_its_first_maximum_only():
    pool = build("maxpool", {"size": 2})
    y, cache = pool.forward({}, np.array([[[1.0, 1.0], [0.0, 1.0]]]))
    assert y.tolist() == [[[1.0]]]
    _, dx = pool.backward({}, cache, np.ones((1, 1, 1)))
    assert dx.tolist() == [[[1.0, 0.0], [0.0, 0.0]]]
