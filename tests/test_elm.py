"""ELM and ELM auto-encoder: exact gradients where fine-tuning uses them, the closed-form readout
against NumPy's least squares, and the solve phase through the one training loop (local, resumed
inside the pass, data parallel)."""

import numpy as np
import pytest

from tests.test_gradients import setup
from tests.test_modules_gradients import check_backward
from xsharp.algos import Model, datasets
from xsharp.algos.modules import build
from xsharp.algos.training import Stopped, TrainHooks, fit, plan
from xsharp.cluster.runner import check_against_data, load_data, run_job
from xsharp.parallel.execution import build_model
from xsharp.spec import SpecError, parse_spec

ELM_SPEC = {
    "name": "tiny-elm",
    "data": {"dataset": "digits", "limit": 600},
    "model": [{"elm_ae": {"hidden": 24, "solve_batch": 120}}, {"elm": {"hidden": 48, "solve_batch": 150}}, {"softmax": {}}],
    "pretrain": {"epochs": 0},
    "train": {"epochs": 2, "batch_size": 20, "learning_rate": 0.3},
    "seed": 3,
}


def ridge_lstsq(H: np.ndarray, T: np.ndarray, ridge: float) -> np.ndarray:
    """argmin |H B - T|^2 + ridge |B|^2, as NumPy's least squares of the stacked system."""
    h = H.shape[1]
    A = np.vstack([H, np.sqrt(ridge) * np.eye(h)])
    B = np.vstack([T, np.zeros((h, T.shape[1]))])
    return np.linalg.lstsq(A, B, rcond=None)[0]


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize(
    "kind,options,in_shape",
    [
        ("elm", {"hidden": 5, "outputs": 3, "activation": "tanh", "finetune": True}, (3, 2)),
        ("elm", {"hidden": 4, "outputs": 2, "activation": "sigmoid", "finetune": True}, (2, 2, 2)),
        ("elm_ae", {"hidden": 4, "output_activation": "linear", "finetune": True}, (3, 2)),
        ("elm_ae", {"hidden": 7, "output_activation": "tanh", "finetune": True, "orthogonal": False}, (5,)),
    ],
    ids=["elm-tanh", "elm-sigmoid-images", "elm_ae-linear", "elm_ae-tanh-overcomplete"],
)
def test_finetuned_elm_backward_matches_finite_differences_and_never_moves_the_random_layer(kind, options, in_shape):
    check_backward(kind, options, in_shape, frozen=("W", "b"))


@pytest.mark.parametrize("kind,options", [("elm", {"hidden": 5, "outputs": 3}), ("elm_ae", {"hidden": 4})])
def test_a_fixed_elm_trains_nothing_and_passes_no_gradient_down(kind, options):
    module, params, x, rng = setup(kind, options)
    y, cache = module.forward(params, x, train=True)
    grads, dx = module.backward(params, cache, rng.standard_normal(y.shape))
    assert grads == {} and dx.shape == x.shape and not dx.any()
    assert set(module.non_trainable) == {"W", "b", "beta"}


def test_fixed_entries_get_no_weight_decay_and_fine_tuning_leaves_them_as_solved():
    data = datasets.load("digits", limit=300, seed=1)
    layers = [{"elm": {"hidden": 32}}, {"softmax": {}}]
    fixed, tuned = (
        Model(layers, data.in_shape, data.n_classes, seed=1),
        Model([{"elm": {"hidden": 32, "finetune": True}}, {"softmax": {}}], data.in_shape, data.n_classes, seed=1),
    )
    for model in (fixed, tuned):
        mask = model.layout.decay_mask(np, np.float32)
        elm_mask = {e.name: mask[e.offset : e.offset + e.size] for e in model.layout.entries if e.module == 0}
        assert not elm_mask["W"].any() and not elm_mask["b"].any()
        assert elm_mask["beta"].all() == (model is tuned)
    settings = parse_spec(ELM_SPEC)
    for model in (fixed, tuned):
        fit(model, data, pretrain=settings.pretrain, train=settings.train.model_copy(update={"epochs": 0}), seed=1)
        solved = {k: v.copy() for k, v in model.params[0].items()}
        head = model.params[1]["W"].copy()
        fit(model, data, pretrain=None, train=settings.train.model_copy(update={"epochs": 2, "weight_decay": 0.01}), seed=1)
        assert not np.array_equal(model.params[1]["W"], head)  # the softmax head trained
        np.testing.assert_array_equal(model.params[0]["W"], solved["W"])
        np.testing.assert_array_equal(model.params[0]["b"], solved["b"])
        assert np.array_equal(model.params[0]["beta"], solved["beta"]) == (model is fixed)


# --------------------------------------------------------------------------- the closed form
@pytest.mark.parametrize("kind,options", [("elm", {"hidden": 6, "outputs": 3, "ridge": 0.5}), ("elm_ae", {"hidden": 5, "ridge": 2.0, "activation": "tanh"})])
def test_readout_from_summed_batches_is_numpys_ridge_solution(kind, options):
    rng = np.random.default_rng(4)
    module = build(kind, options)
    params = {k: v.astype(np.float64) for k, v in module.init(rng, (4,)).items()}
    x, labels = rng.random((23, 4)), rng.integers(0, 3, 23)
    stats = module.statistics(params, x[:10], labels[:10]) + module.statistics(params, x[10:], labels[10:])  # two batches add up
    assert stats.shape == (module.statistics_size(params),)
    solved, error = module.solve(params, stats)

    H = module.hidden(params, x)
    T = np.eye(3)[labels] if kind == "elm" else x
    expected = ridge_lstsq(H, T, options["ridge"])
    np.testing.assert_allclose(solved["beta"], expected, rtol=1e-8, atol=1e-10)
    assert error == pytest.approx(0.5 * ((H @ expected - T) ** 2).sum() / 23, rel=1e-8)
    params["beta"][...] = solved["beta"]
    out = module.forward(params, x)[0]
    np.testing.assert_allclose(out, H @ expected if kind == "elm" else x @ expected.T, rtol=1e-8)


def test_elm_ae_random_weights_are_orthogonal_with_a_unit_bias():
    module = build("elm_ae", {"hidden": 6, "scale": 2.0})
    p = module.init(np.random.default_rng(0), (10,))
    np.testing.assert_allclose(p["W"].T @ p["W"], 4 * np.eye(6), atol=1e-5)  # orthonormal columns, times scale
    assert np.linalg.norm(p["b"]) == pytest.approx(2.0, rel=1e-6)
    wide = build("elm_ae", {"hidden": 12}).init(np.random.default_rng(0), (5,))["W"]
    np.testing.assert_allclose(wide @ wide.T, np.eye(5), atol=1e-5)  # more units than inputs: orthonormal rows


def test_the_solve_is_a_phase_of_fit_and_gives_the_ridge_readout_of_the_layers_input():
    spec = parse_spec(ELM_SPEC)
    data = load_data(spec)
    model = build_model(spec, data)
    phases = plan(model.modules, model.layout, spec.pretrain, spec.train, len(data.y_train))
    assert [(p.name, p.layer, p.kind, p.solve) for p in phases] == [
        ("pretrain", 0, "elm_ae", True),
        ("pretrain", 1, "elm", True),
        ("finetune", None, None, False),
    ]  # pretraining is off, the solves still run
    assert [p.steps_per_epoch for p in phases[:2]] == [4, 3]  # 432 training rows in 120s, then in 150s

    events = []
    history = fit(model, data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed, hooks=TrainHooks(report=events.append))
    for layer, options in ((0, {"ridge": 1.0}), (1, {"ridge": 1.0})):
        module, params = model.modules[layer], {k: v.astype(np.float64) for k, v in model.params[layer].items()}
        inputs = model.transform(data.x_train, upto=layer).astype(np.float64).reshape(len(data.y_train), -1)
        H = module.hidden(params, inputs)
        T = np.eye(data.n_classes)[data.y_train] if layer == 1 else inputs
        expected = ridge_lstsq(H, T, options["ridge"])
        np.testing.assert_allclose(params["beta"], expected, rtol=2e-3, atol=2e-4)  # float32 sums
        residual = 0.5 * ((H @ expected - T) ** 2).sum() / len(T)
        assert history.pretrain[layer]["reconstruction_error"] == pytest.approx(residual, rel=1e-2)
    ends = [(e.phase, e.layer, e.layer_kind) for e in events if e.epoch_end]
    assert ends == [("pretrain", 0, "elm_ae"), ("pretrain", 1, "elm"), ("finetune", None, None), ("finetune", None, None)]
    assert model.accuracy(data.x_test, data.y_test) > 0.85


@pytest.mark.parametrize("at", [1, 3, 4, 6, 7], ids=["first-elm_ae-step", "inside-elm_ae", "after-the-elm_ae-solve", "inside-elm", "after-the-elm-solve"])
def test_a_run_stopped_inside_a_solve_resumes_bitwise(at):
    spec = parse_spec(ELM_SPEC)
    data = load_data(spec)
    assert len(data.y_train) == 432  # steps: 4 of the elm_ae solve (120 rows), then 3 of the elm solve (150)
    full = build_model(spec, data)
    fit(full, data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed)

    count = {"n": 0}

    def should_stop():
        count["n"] += 1
        return count["n"] == at

    with pytest.raises(Stopped) as e:
        fit(build_model(spec, data), data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed, hooks=TrainHooks(should_stop=should_stop))
    state = e.value.state
    layer, size, rows = (0, 24 * 24 + 24 * 64 + 2, min(120 * at, 432)) if at <= 4 else (1, 48 * 48 + 48 * 10 + 2, min(150 * (at - 4), 432))
    assert (state.phase, state.optimizer_state.shape) == (layer, (size,))  # the statistics so far are the phase's state
    assert state.optimizer_state[-1] == rows  # rows summed in
    assert (state.epoch, state.step) == ((1, 0) if at in (4, 7) else (0, at if layer == 0 else at - 4))
    resumed = build_model(spec, data)
    fit(resumed, data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed, hooks=TrainHooks(resume=state))
    np.testing.assert_array_equal(resumed.get_flat(), full.get_flat())


def test_two_data_parallel_workers_solve_the_readout_local_training_solves(ray_address):
    spec = ELM_SPEC | {"train": ELM_SPEC["train"] | {"epochs": 1}}
    local = run_job(parse_spec(spec))
    dp = run_job(parse_spec(spec | {"mode": "data_parallel", "resources": {"workers": 2, "cpus_per_worker": 1}}))
    assert dp.metrics["workers"] == 2
    for layer in (0, 1):
        a, b = local.model.params[layer], dp.model.params[layer]
        np.testing.assert_array_equal(b["W"], a["W"])  # drawn once, on every worker alike
        assert np.abs(a["beta"]).max() > 0.05  # solved
        np.testing.assert_allclose(b["beta"], a["beta"], rtol=1e-3, atol=1e-4)  # float32 sums in another order
    np.testing.assert_allclose(dp.model.get_flat(), local.model.get_flat(), rtol=1e-3, atol=1e-3)
    assert [round(h["reconstruction_error"], 4) for h in dp.metrics["pretrain"]] == [round(h["reconstruction_error"], 4) for h in local.metrics["pretrain"]]
    assert abs(dp.metrics["test_accuracy"] - local.metrics["test_accuracy"]) <= 1 / 120


# --------------------------------------------------------------------------- specs
@pytest.mark.parametrize("mode", ["param_server", "pipeline", "hybrid"])
def test_modes_without_a_solve_phase_refuse_elm_naming_the_mode(mode):
    spec = ELM_SPEC | {"mode": mode, "resources": {"workers": 2}}
    with pytest.raises(SpecError) as e:
        parse_spec(spec)
    assert f"mode: elm_ae at model[0] is solved in closed form, which runs in local and data_parallel modes only, got '{mode}'" in e.value.problems


def test_elm_outputs_must_be_the_class_count_and_options_are_checked():
    spec = parse_spec(ELM_SPEC | {"model": [{"elm": {"hidden": 8, "outputs": 4}}, "softmax"]})
    with pytest.raises(SpecError, match=r"model\[0\]\.elm\.outputs: the data has 10 classes, got 4"):
        check_against_data(spec, load_data(spec))
    with pytest.raises(SpecError, match=r"model\[0\]\.elm\.ridge: must be > 0.0, got 0"):
        parse_spec(ELM_SPEC | {"model": [{"elm": {"hidden": 8, "ridge": 0}}, "softmax"]})
    with pytest.raises(SpecError, match=r"model\[0\]\.elm_ae\.output_activation: must be one of"):
        parse_spec(ELM_SPEC | {"model": [{"elm_ae": {"hidden": 8, "output_activation": "softplus"}}, "softmax"]})


def test_a_saved_elm_model_predicts_the_same_after_loading(tmp_path):
    spec = parse_spec(ELM_SPEC | {"train": ELM_SPEC["train"] | {"epochs": 1}})
    data = load_data(spec)
    model = build_model(spec, data)
    fit(model, data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed)
    loaded = Model.load(model.save(tmp_path / "elm.npz"))
    assert loaded.layers[1]["elm"]["outputs"] == 10
    np.testing.assert_array_equal(loaded.predict_log_proba(data.x_test), model.predict_log_proba(data.x_test))


# --------------------------------------------------------------------------- recipes and the CLI
RECIPES = {
    "digits-elm": "elm -> softmax",
    "digits-elm-ae": "elm_ae -> elm_ae -> elm -> softmax",
    "digits-conv-elm": "conv2d -> maxpool -> elm -> softmax",
    "digits-sc-rbm": "sparse_coding -> rbm -> softmax",
    "digits-crbm-rbm": "crbm -> maxpool -> rbm -> softmax",
}


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_new_recipe_is_a_spec_that_fits_its_data(name):
    from tests.helpers import ROOT
    from xsharp.spec import load_spec

    spec = load_spec(ROOT / "examples" / f"{name}.yaml")
    assert spec.name == name and " -> ".join(next(iter(layer)) for layer in spec.layers) == RECIPES[name]
    check_against_data(spec, load_data(spec))


def test_algos_list_and_show_give_the_elm_modules_and_the_recipes():
    import json

    from tests.helpers import run_cli

    r = run_cli("algos", "list", "-o", "json")
    assert r.returncode == 0, r.stderr
    listing = json.loads(r.stdout)
    solved = {row["name"] for row in listing["modules"] if row["solved"]}
    assert solved == {"elm", "elm_ae"} and not any(row["pretrainable"] for row in listing["modules"] if row["name"] in solved)
    books = {b["name"]: b for b in listing["recipes"]}
    for name, stack in RECIPES.items():
        assert books[name]["model"] == stack and books[name]["description"]
    assert books["digits-elm-ae"]["mode"] == "data_parallel" and books["digits-search"]["mode"] == "search"
    r = run_cli("algos", "show", "digits-conv-elm")
    assert r.returncode == 0, r.stderr
    assert "conv2d -> maxpool -> elm -> softmax" in r.stdout and "xsharp run" in r.stdout and "- elm: {hidden: 2000" in r.stdout
    r = run_cli("algos", "show", "elm")
    assert r.returncode == 0, r.stderr
    for text in ("solved in closed form", "ridge", "solve_batch", "finetune", "Huang et al"):
        assert text in r.stdout, text
