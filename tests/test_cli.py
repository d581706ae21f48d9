"""The `xsharp` command as a user runs it: a subprocess, real files, a real Ray."""

import json

import pytest
import yaml

from tests.helpers import run_cli


def write(tmp_path, spec: dict, name="job.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("args", [[], ["run"], ["predict"], ["spec"], ["spec", "schema"], ["spec", "check"]])
def test_every_command_explains_itself(args):
    r = run_cli(*args, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage: xsharp" in r.stdout
    assert len(r.stdout.split()) > 20


def test_run_local_writes_artifacts_and_predict_reads_them(tmp_path, tiny):
    out = tmp_path / "out"
    r = run_cli("run", str(write(tmp_path, tiny)), "--out", str(out), "-o", "json")
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert metrics["mode"] == "local" and 0.85 < metrics["test_accuracy"] <= 1
    assert metrics["samples_per_second"] > 0 and metrics["seconds_to_first_step"] > 0
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    assert yaml.safe_load((out / "spec.yaml").read_text())["model"][0] == {"rbm": {"hidden": 32, "k": 1, "visible": "bernoulli", "persistent": False}}
    assert "fine-tune: epoch 20/20" in r.stderr  # a line per epoch when stderr is not a terminal

    r = run_cli("predict", str(out), "--data", "digits", "--out", str(tmp_path / "p.csv"), "-o", "json")
    assert r.returncode == 0, r.stderr
    pred = json.loads(r.stdout)
    assert pred["accuracy"] == pytest.approx(metrics["test_accuracy"])  # same split, same model
    assert len((tmp_path / "p.csv").read_text().splitlines()) == pred["n"] + 1


def test_run_data_parallel_on_an_existing_cluster(tmp_path, tiny, ray_address):
    r = run_cli(
        "run", str(write(tmp_path, tiny)), "--mode", "data_parallel", "--workers", "2", "-o", "json", "--no-save", env={"XSHARP_RAY_ADDRESS": ray_address}
    )
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert metrics["workers"] == 2 and metrics["test_accuracy"] > 0.85
    assert f"Ray cluster at {ray_address}" in r.stderr


def test_run_data_parallel_on_an_embedded_ray(tmp_path, tiny):
    r = run_cli("run", str(write(tmp_path, tiny)), "--mode", "data_parallel", "--workers", "1", "-o", "json", "--no-save")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["workers"] == 1
    assert "Ray embedded" in r.stderr


def test_a_bad_spec_exits_2_naming_the_field(tmp_path, tiny):
    tiny["model"][1] = {"rbm": {"hidden": -3}}
    r = run_cli("run", str(write(tmp_path, tiny)))
    assert r.returncode == 2
    assert "model[1].rbm.hidden: must be > 0, got -3" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


@pytest.mark.parametrize(
    "content,message",
    [("model: [\n", "not valid YAML: line"), ("- 1\n- 2\n", "spec: must be a mapping of fields"), (None, "cannot read")],
)
def test_unreadable_specs_exit_2(tmp_path, content, message):
    path = tmp_path / "s.yaml"
    if content is not None:
        path.write_text(content)
    for args in (["run", str(path)], ["spec", "check", str(path)]):
        r = run_cli(*args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_missing_data_and_missing_gpu_exit_2(tmp_path, tiny):
    tiny["data"] = {"path": str(tmp_path / "nope.npz")}
    r = run_cli("run", str(write(tmp_path, tiny)))
    assert r.returncode == 2 and "no such file" in r.stderr
    tiny["data"] = {"dataset": "digits"}
    r = run_cli("run", str(write(tmp_path, tiny)), "--device", "gpu")
    from xsharp import backend

    if backend.gpu_count() == 0:
        assert r.returncode == 2 and "device 'gpu' requested" in r.stderr


def test_a_worker_group_too_big_for_the_cluster_exits_2(tmp_path, tiny, ray_address):
    r = run_cli("run", str(write(tmp_path, tiny)), "--mode", "data_parallel", "--workers", "64", env={"XSHARP_RAY_ADDRESS": ray_address})
    assert r.returncode == 2 and "can never fit" in r.stderr and "Traceback" not in r.stderr


def test_spec_schema_and_check(tmp_path, tiny):
    r = run_cli("spec", "schema")
    assert r.returncode == 0 and "properties" in json.loads(r.stdout)
    r = run_cli("spec", "check", str(write(tmp_path, tiny)))
    assert r.returncode == 0 and yaml.safe_load(r.stdout)["train"]["momentum"] == 0.9


def test_predict_refuses_a_missing_model_and_wrong_shapes(tmp_path, tiny):
    r = run_cli("predict", str(tmp_path), "--data", "digits")
    assert r.returncode == 2 and "no model here" in r.stderr
    out = tmp_path / "m"
    assert run_cli("run", str(write(tmp_path, tiny)), "--out", str(out)).returncode == 0
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((3, 5), np.float32))
    r = run_cli("predict", str(out), "--data", str(tmp_path / "x.npy"))
    assert r.returncode == 2 and "the model expects (8, 8)" in r.stderr


def test_softmax_units_that_disagree_with_the_data_exit_2(tmp_path, tiny):
    tiny["model"][-1] = {"softmax": {"units": 3}}
    r = run_cli("run", str(write(tmp_path, tiny)))
    assert r.returncode == 2 and "model[2].softmax.units: the data has 10 classes, got 3" in r.stderr


def test_paths_with_brackets_and_an_out_that_is_a_file(tmp_path, tiny):
    odd = tmp_path / "runs[x]"
    odd.mkdir()
    spec = write(odd, tiny)
    (tmp_path / "file").write_text("")
    r = run_cli("run", str(spec), "--out", str(tmp_path / "file"))
    assert r.returncode == 2 and "file" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("spec", "check", str(odd / "missing[1].yaml"))
    assert r.returncode == 2 and "missing[1].yaml" in r.stderr


def test_predict_maps_named_labels_and_refuses_unknown_ones(tmp_path, tiny):
    import numpy as np

    out = tmp_path / "m"
    assert run_cli("run", str(write(tmp_path, tiny)), "--out", str(out)).returncode == 0
    from xsharp.algos import datasets

    d = datasets.load("digits", seed=0)
    np.savez(tmp_path / "named.npz", x=d.x_test[:50], y=d.y_test[:50].astype(str))
    r = run_cli("predict", str(out), "--data", str(tmp_path / "named.npz"), "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accuracy"] > 0.7
    np.savez(tmp_path / "bad.npz", x=d.x_test[:5], y=np.array(["cat"] * 5))
    r = run_cli("predict", str(out), "--data", str(tmp_path / "bad.npz"))
    assert r.returncode == 2 and "not among the model's classes" in r.stderr
    r = run_cli("predict", str(out), "--data", "digits", "--out", str(tmp_path / "no" / "p.csv"))
    assert r.returncode == 2 and "No such file" in r.stderr


def test_a_layer_that_does_not_fit_its_input_exits_2(tmp_path, tiny):
    tiny["model"] = [{"conv2d": {"filters": 4, "kernel": 9}}, "softmax"]
    r = run_cli("run", str(write(tmp_path, tiny)))
    assert r.returncode == 2 and "model[0].conv2d:" in r.stderr and "does not fit" in r.stderr and "Traceback" not in r.stderr
