"""Preprocessing that travels with the model: fitted on training rows, saved in model.npz,
applied again by `xsharp predict`; image augmentation; the example recipes parse."""

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import ROOT, run_cli
from xsharp import backend
from xsharp.algos import Model, datasets, features, image
from xsharp.cluster.runner import load_data, run_job
from xsharp.spec import load_spec, parse_spec


def test_standardize_learns_from_training_rows_only():
    data = datasets.load("digits", seed=0)
    prepared = features.prepare(data, [{"standardize": {}}])
    step = prepared.pipeline.steps[0]
    np.testing.assert_allclose(step.state["mean"], data.x_train.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(prepared.x_train.mean(axis=0), 0, atol=1e-5)
    assert abs(float(prepared.x_test.mean())) > 1e-4  # test rows use the training statistics, not their own
    np.testing.assert_allclose(prepared.pipeline.transform(data.x_test), prepared.x_test)
    glob = features.prepare(data, [{"standardize": {"per": "global"}}])
    assert glob.pipeline.steps[0].state["mean"].shape == () and abs(float(glob.x_train.std()) - 1) < 1e-3


def test_audio_steps_turn_waveforms_into_fixed_size_features():
    x = np.random.default_rng(0).normal(size=(3, 8000)).astype(np.float32)
    pipe = features.Pipeline.from_spec([{"mfcc": {"n_mfcc": 12}}, {"cmvn": {}}, {"stack_frames": {"context": 1, "stride": 3}}], sample_rate=8000)
    out = pipe.fit(x)
    assert out.shape == (3, 33, 36) and out.dtype == np.float32
    assert pipe.steps[0].options.sample_rate == 8000  # the data's rate, written into the step (and the saved model)
    assert pipe.transform(x[:0]).shape == (0, 33, 36)


def test_augment_shifts_and_flips_through_the_given_rng():
    x = np.zeros((2, 1, 5, 5), np.float32)
    x[:, 0, 2, 2] = 1
    moved = image.shift(x, np.array([1, -2]), np.array([0, 1]))
    assert moved[0, 0, 3, 2] == 1 and moved[1, 0, 0, 3] == 1 and moved.sum() == 2
    imgs = np.random.default_rng(0).random((64, 6, 6)).astype(np.float32)
    a = image.augment(imgs, backend.RowRNG(backend.rng(5)), max_shift=1, flip=True)
    b = image.augment(imgs, backend.RowRNG(backend.rng(5)), max_shift=1, flip=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, imgs)
    mirrored = image.augment(imgs, backend.rng(1), max_shift=0, flip=True)
    flipped = [np.array_equal(m, i[:, ::-1]) for m, i in zip(mirrored, imgs)]
    assert 16 < sum(flipped) < 48 and all(f or np.array_equal(m, i) for f, m, i in zip(flipped, mirrored, imgs))
    data = datasets.load("digits", seed=0)
    grown = features.prepare(data, [], {"copies": 2, "max_shift": 1}, seed=0)
    assert len(grown.y_train) == 3 * len(data.y_train) and len(grown.y_test) == len(data.y_test)


def test_model_file_keeps_the_pipeline_and_old_files_still_load(tmp_path):
    data = datasets.load("digits", seed=0)
    prepared = features.prepare(data, [{"standardize": {}}])
    model = Model([{"softmax": {}}], prepared.in_shape, prepared.n_classes, seed=0)
    model.flat += 0.01
    model.pipeline = prepared.pipeline
    loaded = Model.load(model.save(tmp_path / "m.npz"))
    assert loaded.pipeline.describe() == prepared.pipeline.describe()
    np.testing.assert_array_equal(loaded.predict(loaded.pipeline.transform(data.x_test)), model.predict(prepared.x_test))
    model.pipeline = None
    assert Model.load(model.save(tmp_path / "plain.npz")).pipeline is None  # as files were before features existed


def write_wavs(folder: Path):
    folder.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(4000) / 8000
    for speaker in ("s1", "s2", "s3", "s4"):
        for label in range(3):
            for take in range(4):
                a = 0.4 * np.sin(2 * np.pi * 400 * (label + 1) * (1 + 0.05 * rng.normal()) * t) + 0.02 * rng.normal(size=t.size)
                with wave.open(str(folder / f"{label}_{speaker}_{take}.wav"), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(8000)
                    w.writeframes((a * 32767).astype("<i2").tobytes())


def test_audio_job_holds_out_speakers_and_saves_its_features(tmp_path):
    write_wavs(tmp_path / "wavs")
    spec = parse_spec(
        {
            "data": {
                "path": str(tmp_path / "wavs"),
                "sample_rate": 8000,
                "duration": 0.5,
                "test_speakers": ["s4"],
                "validation_fraction": 0,
                "features": [{"logmel": {"n_mels": 16, "hop_ms": 20}}, {"standardize": {}}],
            },
            "model": [{"dense": {"units": 16}}, "softmax"],
            "pretrain": {"epochs": 0},
            "train": {"epochs": 15, "batch_size": 8, "learning_rate": 0.05},
        }
    )
    result = run_job(spec, out_dir=tmp_path / "out")
    assert result.metrics["test_accuracy"] == 1.0 and "12 test" in result.metrics["dataset"]
    loaded = Model.load(tmp_path / "out" / "model.npz")
    assert [next(iter(s)) for s in loaded.pipeline.describe()] == ["logmel", "standardize"]
    raw = datasets.load(path=tmp_path / "wavs", sample_rate=8000, duration=0.5, test_speakers=["s4"], validation_fraction=0)
    assert (loaded.predict(loaded.pipeline.transform(raw.x_test)) == raw.y_test).all()


def test_text_job_then_predict_applies_the_saved_tfidf(tmp_path):
    rng = np.random.default_rng(0)
    words = {"pos": "great fine superb lovely", "neg": "awful dull boring poor"}
    lines = ["label,text"] + [f"{lab},the film was {' '.join(rng.choice(words[lab].split(), 3))} and long" for lab in ("pos", "neg") * 40]
    (tmp_path / "reviews.csv").write_text("\n".join(lines) + "\n")
    spec = {
        "data": {"path": str(tmp_path / "reviews.csv"), "features": [{"tfidf": {"min_count": 1}}]},
        "model": ["softmax"],
        "pretrain": {"epochs": 0},
        "train": {"epochs": 10, "batch_size": 8, "learning_rate": 0.5},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    r = run_cli("run", str(tmp_path / "job.yaml"), "--out", str(tmp_path / "out"), "-o", "json", "--mode", "local")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["test_accuracy"] == 1.0
    (tmp_path / "new.csv").write_text("label,text\npos,a lovely superb film\nneg,so dull and poor\n")
    r = run_cli("predict", str(tmp_path / "out"), "--data", str(tmp_path / "new.csv"), "-o", "json")
    assert r.returncode == 0, r.stderr
    pred = json.loads(r.stdout)
    assert pred["accuracy"] == 1.0 and [p["class"] for p in pred["predictions"]] == ["pos", "neg"]


def test_texts_without_features_are_refused_clearly(tmp_path):
    (tmp_path / "t.csv").write_text("label,text\n" + "a,x y\nb,y z\n" * 20)
    spec = parse_spec({"data": {"path": str(tmp_path / "t.csv")}, "model": ["softmax"]})
    with pytest.raises(datasets.DataError, match="add data.features"):
        load_data(spec)


RECIPES = [
    "digits-mlp",
    "digits-cnn",
    "digits-sae",
    "fashion-mnist-cnn",
    "fashion-mnist-dbn",
    "fashion-mnist-sae",
    "spoken-digits-dnn",
    "spoken-digits-cnn",
    "rotten-tomatoes",
    "rotten-tomatoes-word2vec",
]


@pytest.mark.parametrize("name", RECIPES)
def test_every_pipeline_recipe_is_a_valid_spec(name):
    spec = load_spec(ROOT / "examples" / f"{name}.yaml")
    assert spec.name == name and spec.layers[-1] == {"softmax": {}}
