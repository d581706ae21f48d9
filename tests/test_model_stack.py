from types import SimpleNamespace as Settings

import numpy as np
import pytest

from xsharp.algos import SGD, Model, apply_updates, datasets, fit


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", seed=0)


def phase(**kw):
    base = dict(epochs=3, batch_size=32, learning_rate=0.1, momentum=0.5, weight_decay=0.0)
    return Settings(**(base | kw))


def test_parameters_are_views_into_one_flat_buffer():
    model = Model([{"rbm": {"hidden": 4}}, {"softmax": {}}], (6,), 3)
    assert model.layout.size == 6 * 4 + 4 + 6 + 4 * 3 + 3
    model.flat[...] = np.arange(model.layout.size)
    assert model.params[0]["W"][0, 0] == 0 and model.params[1]["b"][-1] == model.layout.size - 1
    sl = model.layout.module_slices[1]
    model.flat[sl] += 1000  # one module's parameters are one contiguous slice
    assert model.params[1]["W"].min() >= 1000 and model.params[0]["W"].max() < 1000
    with pytest.raises(ValueError, match="expected"):
        model.set_flat(np.zeros(3))


def test_sgd_momentum_and_decay_follow_the_formula():
    p = np.array([1.0, 2.0], dtype=np.float32)
    opt = SGD(learning_rate=0.5, momentum=0.9, weight_decay=0.1, mask=np.array([1.0, 0.0], np.float32))
    state = opt.init(p)
    g = np.array([0.2, -0.4], dtype=np.float32)
    upd, state = opt.update(g, state, p)
    np.testing.assert_allclose(upd, [-0.5 * (0.2 + 0.1 * 1.0), -0.5 * -0.4], rtol=1e-6)
    first = upd.copy()  # the update is the velocity buffer itself, reused in place
    apply_updates(p, first)
    upd2, _ = opt.update(g, state, p)
    np.testing.assert_allclose(upd2, 0.9 * first - 0.5 * (g + 0.1 * p * [1, 0]), rtol=1e-6)


def test_cd1_pretraining_lowers_reconstruction_error(digits):
    model = Model([{"rbm": {"hidden": 64}}, {"softmax": {}}], digits.in_shape, digits.n_classes, seed=0)
    history = fit(model, digits, pretrain=phase(epochs=5), train=phase(epochs=0), seed=0)
    errors = [h["reconstruction_error"] for h in history.pretrain]
    assert len(errors) == 5 and errors[-1] < 0.75 * errors[0]


def test_mixed_stack_pretrains_each_layer_and_learns_digits(digits):
    layers = [{"rbm": {"hidden": 64}}, {"autoencoder": {"hidden": 32}}, {"softmax": {}}]
    model = Model(layers, digits.in_shape, digits.n_classes, seed=0)
    before = model.accuracy(digits.x_test, digits.y_test)
    history = fit(model, digits, pretrain=phase(epochs=4), train=phase(epochs=15, momentum=0.9), seed=0)
    assert [h["layer"] for h in history.pretrain] == [0] * 4 + [1] * 4
    assert history.finetune[-1]["loss"] < history.finetune[0]["loss"]
    acc = model.accuracy(digits.x_test, digits.y_test)
    assert before < 0.3 and acc > 0.9
    assert history.samples == 8 * len(digits.y_train) + 15 * len(digits.y_train)


def test_save_and_load_keep_predictions_classes_and_spec(tmp_path, digits):
    model = Model([{"autoencoder": {"hidden": 16}}, {"softmax": {}}], digits.in_shape, digits.n_classes, seed=4, classes=list("abcdefghij"))
    model.flat += 0.01
    path = model.save(tmp_path / "model.npz", spec={"name": "x"})
    loaded = Model.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(digits.x_test), model.predict_proba(digits.x_test))
    assert loaded.classes == list("abcdefghij") and loaded.spec == {"name": "x"} and loaded.layers == model.layers
    assert not (tmp_path / "model.npz.tmp").exists()


def test_dataset_by_path_and_its_errors(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 4)), rng.integers(0, 3, 50)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = datasets.load(path=tmp_path / "d.npz", test_fraction=0.2, validation_fraction=0.1)
    assert len(d.y_test) == 10 and len(d.y_train) + len(d.y_val) == 40 and d.in_shape == (4,)
    with pytest.raises(datasets.DataError, match="no such file"):
        datasets.load(path=tmp_path / "missing.npz")
    np.savez(tmp_path / "wrong.npz", a=x)
    with pytest.raises(datasets.DataError, match="expected arrays x and y"):
        datasets.load(path=tmp_path / "wrong.npz")
    with pytest.raises(datasets.DataError, match="cannot tell the format"):
        (tmp_path / "d.bin").write_bytes(b"")
        datasets.load(path=tmp_path / "d.bin")


def test_split_is_reproducible_and_stratified():
    a = datasets.load("digits", seed=5)
    b = datasets.load("digits", seed=5)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() >= 30 and counts.max() <= 40
