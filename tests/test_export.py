"""ONNX export (`xsharp export`): every example recipe, trained tiny, exports and computes what
xsharp computes; modules no recipe uses are checked on random parameters; refusals name what
they refuse."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from tests.helpers import run_cli
from xsharp.algos import Model, datasets
from xsharp.export.graph import OPSET, ExportError
from xsharp.export.onnx import export_model, load_model, raw_rows, verify

ROOT = Path(__file__).resolve().parents[1]


def _bundled_or_path(recipe: Path) -> bool:
    dataset = yaml.safe_load(recipe.read_text())["data"].get("dataset")
    return dataset is None or dataset in datasets.NAMED


# Every recipe but those naming an imported dataset (their data is made by a script first; the
# model is the same as their bundled twin's: fashion-mnist-png-cnn is fashion-mnist-cnn).
RECIPES = [r for r in sorted(ROOT.glob("examples/*.yaml")) if _bundled_or_path(r)]
# Feature steps ONNX cannot express exactly (text: tokenizer, n-grams, vocabulary lookup): the
# export must refuse, naming the step.
REFUSED = {"rotten-tomatoes": "tfidf", "rotten-tomatoes-word2vec": "word2vec"}
MAX_ROWS = 2000  # verified rows per recipe (Fashion-MNIST's test split has 10,000)


def _first_of_grids(value):
    """A search recipe's first grid point: ``{grid: [a, ...]}`` -> a, everywhere."""
    if isinstance(value, dict):
        if set(value) == {"grid"}:
            return value["grid"][0]
        return {k: _first_of_grids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_first_of_grids(v) for v in value]
    return value


def tiny(recipe: dict, spoken_dir: Path | None = None) -> dict:
    """The recipe's architecture on ~300 rows, one epoch per phase, in this process."""
    spec = _first_of_grids({k: v for k, v in recipe.items() if k != "search"})
    spec["data"] = {**spec["data"], "limit": 300}
    spec["train"] = {**spec.get("train", {}), "epochs": 1}
    pre = dict(spec.get("pretrain") or {})
    if pre.get("epochs", 20):  # the default pretrains: one epoch per layer
        pre["epochs"] = 1
    spec["pretrain"] = pre
    spec["mode"] = "local"
    spec.pop("resources", None)
    if spoken_dir is not None:
        spec["data"]["path"] = str(spoken_dir)
    return spec


@pytest.fixture(scope="session")
def spoken_digits(tmp_path_factory) -> Path:
    """A tiny spoken-digit set (4 speakers, the recipes' held-out voices among them), made with
    Debian's espeak-ng (scripts/system-deps.sh installs it)."""
    assert shutil.which("espeak-ng"), "espeak-ng is missing: scripts/system-deps.sh installs it"
    out = tmp_path_factory.mktemp("spoken-digits")
    cmd = [sys.executable, str(ROOT / "scripts/synth_spoken_digits.py"), str(out), "--takes", "1", "--accents", "en-us", "--voices", "m1", "m3", "f4", "john"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and any(out.glob("*.wav")), done.stderr[-2000:]
    return out


def _train(spec: dict, out: Path) -> Model:
    from xsharp.cluster.runner import run_job
    from xsharp.spec import parse_spec

    run_job(parse_spec(spec), out_dir=out)
    return load_model(out)


def check_proto(proto, model: Model) -> None:
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= OPSET >= 17
    graph = proto.graph
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == ["probabilities", "label"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")  # the batch is symbolic
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.output[1].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1:] == [model.n_classes]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == model.classes


def check_agrees(model: Model, path: Path, x: np.ndarray) -> None:
    v = verify(model, path, x)
    assert v.rows == len(x) > 0
    assert v.argmax_agree >= 0.999, v
    assert v.max_prob_diff <= 1e-4, v


@pytest.mark.parametrize("recipe_path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_exports(recipe_path, tmp_path, spoken_digits):
    recipe = yaml.safe_load(recipe_path.read_text())
    spoken = spoken_digits if recipe["data"].get("format") == "wav" else None
    model = _train(tiny(recipe, spoken), tmp_path / "run")
    if recipe_path.stem in REFUSED:
        with pytest.raises(ExportError, match=REFUSED[recipe_path.stem]):
            export_model(model)
        return
    x = raw_rows(model)[:MAX_ROWS]
    proto = export_model(model)
    check_proto(proto, model)
    path = tmp_path / "model.onnx"
    onnx.save(proto, str(path))
    check_agrees(model, path, x)


def _randomised(model: Model, seed: int = 0) -> Model:
    """Non-trivial parameters everywhere (running statistics, biases), as training leaves them."""
    rng = np.random.default_rng(seed)
    for module, params in zip(model.modules, model.params):
        for name, a in params.items():
            if name == "running_var":
                a[...] = rng.uniform(0.5, 2.0, a.shape)
            elif name in ("b", "b_h", "beta", "running_mean", "gamma") or module.kind in ("elm", "elm_ae"):
                a[...] += rng.normal(0, 0.3, a.shape)
            else:
                a[...] += rng.normal(0, 0.05, a.shape)
    return model


@pytest.mark.parametrize(
    "layers,in_shape",
    [
        (  # (H, W) input, padding and stride, batch norm on images and on vectors, average pooling, ISTA
            [
                {"conv2d": {"filters": 4, "kernel": 3, "stride": 2, "padding": 1, "activation": "tanh"}},
                {"batchnorm": {}},
                {"avgpool": {"size": 2, "stride": 1}},
                {"dense": {"units": 24, "activation": "sigmoid"}},
                {"batchnorm": {"eps": 0.01}},
                {"autoencoder": {"hidden": 16, "activation": "linear"}},
                {"sparse_coding": {"atoms": 12, "l1_weight": 0.05, "algorithm": "ista", "iterations": 20}},
                {"dropout": {"rate": 0.3}},
                {"softmax": {}},
            ],
            (9, 9),
        ),
        (  # (C, H, W) input, overlapping max pooling, strided CRBM, pooling and batch norm on (H, W)
            [
                {"crbm": {"filters": 3, "kernel": 3, "stride": 2}},
                {"maxpool": {"size": 3, "stride": 1}},
                {"batchnorm": {}},
                {"elm_ae": {"hidden": 20, "output_activation": "relu"}},
                {"elm": {"hidden": 30, "activation": "relu"}},
                {"softmax": {}},
            ],
            (2, 11, 11),
        ),
        ([{"maxpool": {"size": 2}}, {"avgpool": {"size": 2}}, {"batchnorm": {}}, {"softmax": {}}], (8, 8)),
    ],
    ids=["conv-bn-avgpool-ista", "crbm-maxpool-elm", "pools-on-hw"],
)
def test_modules_no_recipe_uses(layers, in_shape, tmp_path):
    model = _randomised(Model(layers, in_shape, 5, classes=list("abcde")))
    proto = export_model(model)
    check_proto(proto, model)
    path = tmp_path / "model.onnx"
    onnx.save(proto, str(path))
    x = np.random.default_rng(1).uniform(0, 1, (200, *in_shape)).astype(np.float32)
    check_agrees(model, path, x)


def test_cli_exports_and_verifies_the_digits_dbn(tmp_path):
    recipe = yaml.safe_load((ROOT / "examples/digits-dbn.yaml").read_text())
    _train(tiny(recipe), tmp_path / "dbn")
    out = tmp_path / "dbn.onnx"
    done = run_cli("export", str(tmp_path / "dbn"), "--format", "onnx", "--out", str(out), "--verify")
    assert done.returncode == 0, done.stderr
    assert out.exists()
    assert "60 rows" in done.stdout and "argmax agreement 100.00 %" in done.stdout, done.stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    p, label = session.run(None, {"input": np.zeros((3, 8, 8), np.float32)})
    assert p.shape == (3, 10) and label.dtype == np.int64
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)


def test_cli_refuses_with_exit_2_naming_the_module(tmp_path):
    # sparse coding with more solver iterations than an unrolled graph takes
    Model([{"sparse_coding": {"atoms": 8, "iterations": 5000}}, {"softmax": {}}], (8, 8), 3).save(tmp_path / "model.npz")
    done = run_cli("export", str(tmp_path), "--out", str(tmp_path / "m.onnx"))
    assert done.returncode == 2, done.stderr
    assert "sparse_coding" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "m.onnx").exists()

    # a model file naming a module kind this xsharp does not know
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    Model([{"rbm": {"hidden": 4}}, {"softmax": {}}], (8, 8), 3).save(unknown / "model.npz")
    with np.load(unknown / "model.npz") as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    meta["layers"][0] = {"capsule": {"hidden": 4}}
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(unknown / "model.npz", **arrays)
    done = run_cli("export", str(unknown), "--out", str(tmp_path / "u.onnx"))
    assert done.returncode == 2, done.stderr
    assert "capsule" in done.stderr and "Traceback" not in done.stderr


def test_a_model_with_feature_steps_exports_without_its_training_data(tmp_path, spoken_digits):
    """The raw row shape is saved with the model, so exporting needs no access to the data."""
    recipe = yaml.safe_load((ROOT / "examples/spoken-digits-dnn.yaml").read_text())
    copy = tmp_path / "voices"
    shutil.copytree(spoken_digits, copy)
    model = _train(tiny(recipe, copy), tmp_path / "run")
    assert model.pipeline.raw_shape == (16000,)
    x = raw_rows(model, "test")
    shutil.rmtree(copy)
    proto = export_model(model)
    path = tmp_path / "model.onnx"
    onnx.save(proto, str(path))
    check_agrees(model, path, x)
