import json

import pytest
import yaml

from xsharp.spec import SpecError, json_schema, load_spec, parse_spec


def problems(data) -> list[str]:
    with pytest.raises(SpecError) as e:
        parse_spec(data)
    return e.value.problems


def test_valid_spec_fills_defaults_and_round_trips(tiny):
    spec = parse_spec(tiny)
    assert spec.pretrain.momentum == 0.5 and spec.train.epochs == 20
    assert spec.layers[0] == {"rbm": {"hidden": 32, "k": 1, "visible": "bernoulli", "persistent": False}}
    again = parse_spec(yaml.safe_load(spec.to_yaml()))
    assert again == spec


def test_short_forms_of_a_module_without_options(tiny):
    tiny["model"] = [{"dense": {"units": 8}}, "softmax"]
    assert parse_spec(tiny).layers[-1] == {"softmax": {}}
    tiny["model"] = [{"dense": {"units": 8}}, {"softmax": None}]
    assert parse_spec(tiny).layers[-1] == {"softmax": {}}


def test_error_names_the_field_path_and_the_value(tiny):
    tiny["model"][1] = {"rbm": {"hidden": -3}}
    assert problems(tiny) == ["model[1].rbm.hidden: must be > 0, got -3"]


def test_every_problem_is_reported_once(tiny):
    tiny["data"] = {"dataset": "digits/x/y"}
    tiny["model"] = [{"rbm": {"hiden": 4}}, {"convnet": {}}, "softmax"]
    tiny["train"]["epochs"] = -1
    tiny["mode"] = "fast"
    got = problems(tiny)
    assert any(
        p.startswith("data.dataset: not a dataset name: a bundled one (digits, fashion-mnist, rotten-tomatoes) or an imported one")
        and p.endswith("got 'digits/x/y'")
        for p in got
    )
    assert "model[0].rbm.hidden: is required" in got
    assert "model[0].rbm.hiden: unknown field; did you mean 'hidden'?" in got
    assert any(p.startswith("model[1]: must be one module as {name: options}") for p in got)
    assert "train.epochs: must be >= 0, got -1" in got
    assert any(p.startswith("mode: must be one of 'local', 'data_parallel'") and p.endswith("got 'fast'") for p in got)
    assert len(got) == 6


def test_semantic_rules(tiny):
    tiny["model"] = [{"rbm": {"hidden": 4}}]
    assert problems(tiny) == ["model: the last module must be softmax (the classifier head), got rbm"]
    tiny["model"] = ["softmax", "softmax"]
    assert problems(tiny) == ["model: softmax may only be the last module, found at model[0]"]
    tiny["model"] = ["softmax"]
    tiny["resources"] = {"workers": 2}
    assert problems(tiny) == ["resources: local mode runs one worker, got workers: 2; use mode: data_parallel"]
    tiny.pop("resources")
    tiny["data"] = {"dataset": "digits", "path": "x.npz"}
    assert problems(tiny) == ["data: give exactly one of dataset (a name) or path (a file)"]


def test_not_a_mapping():
    assert problems([1, 2]) == ["spec: must be a mapping of fields, got [1, 2]"]
    assert problems({"data": {"dataset": "digits"}, "model": [3]})[0].startswith("model[0]: must be one module")


def test_load_spec_reports_yaml_errors_with_a_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  dataset: digits\nmodel: [\n")
    with pytest.raises(SpecError) as e:
        load_spec(bad)
    assert "not valid YAML: line" in e.value.problems[0]
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")


def test_load_spec_names_the_job_after_the_file_and_applies_overrides(tmp_path, tiny):
    tiny.pop("name")
    f = tmp_path / "my job.yaml"
    f.write_text(yaml.safe_dump(tiny))
    spec = load_spec(f, {"mode": "data_parallel", "resources.workers": 3})
    assert spec.name == "my-job" and spec.mode == "data_parallel" and spec.resources.workers == 3


def test_schema_is_json_and_lists_every_module():
    schema = json_schema()
    text = json.dumps(schema)
    for kind in ("rbm", "autoencoder", "dense", "softmax"):
        assert f'"{kind}"' in text
    assert set(schema["required"]) == {"data", "model"}


def test_odd_yaml_values_give_messages_not_crashes(tiny, tmp_path):
    tiny["model"] = [{"rbm": {"hidden": 4}, "x": {__import__("datetime").date(2020, 1, 1): 1}}, "softmax"]
    assert problems(tiny)[0].startswith("model[0]: must be one module")
    tiny["model"] = ["softmax"]
    tiny["train"]["learning_rate"] = float("nan")
    assert problems(tiny) == ["train.learning_rate: must be a finite number, got NaN"]


def test_an_override_replaces_a_malformed_section(tmp_path, tiny):
    tiny["resources"] = None
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(tiny))
    spec = load_spec(f, {"mode": "data_parallel", "resources.workers": 2})
    assert spec.resources.workers == 2
