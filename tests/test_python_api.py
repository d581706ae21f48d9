"""The Python API a notebook uses: ``examples/notebook.py`` runs where Ray cannot be imported,
trains a model that beats chance by far, and saves, loads and predicts with it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import NO_RAY
from xsharp.algos import Model, PretrainSpec, TrainSpec, datasets, train

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "notebook.py"
FLOOR = 0.8  # test accuracy a trained digits model passes and an untrained one (about 0.1) does not


def test_the_notebook_example_trains_saves_loads_and_predicts_without_ray(tmp_path):
    saved = tmp_path / "model.npz"
    run = subprocess.run([sys.executable, "-c", NO_RAY, str(SCRIPT), str(saved)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    accuracy = float(re.search(r"^test accuracy: ([0-9.]+)$", run.stdout, re.M).group(1))
    assert accuracy > FLOOR, run.stdout
    predicted = re.search(r"^predicted: \[(.*)\]$", run.stdout, re.M).group(1).split(", ")
    assert len(predicted) == 5
    assert saved.is_file()
    model = Model.load(saved)  # what the script saved is a whole model: it scores as the script said
    data = datasets.load("digits", seed=0)
    assert model.accuracy(data.x_test, data.y_test) == pytest.approx(accuracy, abs=5e-5)
    assert [f"'{model.classes[i]}'" for i in model.predict(data.x_test[:5])] == predicted


def test_the_finder_really_keeps_ray_out(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import ray\n")
    run = subprocess.run([sys.executable, "-c", NO_RAY, str(probe)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "ray is absent here" in run.stderr


def test_an_untrained_model_stays_under_the_floor():
    data = datasets.load("digits", seed=0)
    model = Model([{"rbm": {"hidden": 128}}, {"softmax": {}}], data=data, seed=0)
    assert model.accuracy(data.x_test, data.y_test) < FLOOR


def test_a_model_for_the_data_reads_its_shape_and_names_its_classes():
    data = datasets.load("digits", seed=0)
    layers = [{"dense": {"units": 32}}, {"softmax": {}}]
    a, b = Model(layers, data=data), Model.for_data(layers, data)
    c = Model(layers, data.in_shape, data.n_classes, classes=data.classes)  # the old signature still works
    for m in (a, b, c):
        assert (m.in_shape, m.n_classes, m.classes) == ((8, 8), 10, [str(i) for i in range(10)])
    assert (a.get_flat() == c.get_flat()).all()
    with pytest.raises(TypeError, match="Model\\(layers, data=dataset\\)"):
        Model(layers)


def test_train_takes_plain_settings_and_refuses_bad_ones():
    data = datasets.load("digits", seed=0)
    a = Model.for_data([{"dense": {"units": 32}}, {"softmax": {}}], data)
    history = train(a, data, epochs=3, batch_size=64, learning_rate=0.2)
    assert [e["epoch"] for e in history.finetune] == [1, 2, 3]
    assert a.accuracy(data.x_test, data.y_test) > FLOOR
    b = Model.for_data([{"dense": {"units": 32}}, {"softmax": {}}], data)
    from xsharp.algos import fit

    fit(b, data, pretrain=None, train=TrainSpec(epochs=3, batch_size=64, learning_rate=0.2))  # the same run, spelt out
    assert (a.get_flat() == b.get_flat()).all()
    with pytest.raises(ValueError, match="learning_rate"):
        train(a, data, epochs=1, learning_rate=-1.0)
    with pytest.raises(ValueError, match="epoch"):
        train(a, data, epoch=1)  # a misspelt setting is an error, not ignored
    with pytest.raises(ValueError, match="epochs"):
        PretrainSpec(epochs=-1)
