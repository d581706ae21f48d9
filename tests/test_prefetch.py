"""Input overlap (``data.prefetch``): one option of the spec, shown in its schema, bounded, and
without effect on the numbers: training with it off and on ends in the same parameters, bit for bit."""

import json

import numpy as np
import pytest
import yaml

from tests.helpers import TINY, run_cli
from xsharp.algos.training import MAX_PREFETCH_KB, PREFETCH_KB, prefetch_bytes
from xsharp.cluster.runner import load_data
from xsharp.parallel import RunContext, get_mode
from xsharp.spec import SpecError, json_schema, parse_spec

QUICK = TINY | {"pretrain": {"epochs": 1, "batch_size": 20}, "train": {"epochs": 3, "batch_size": 20, "learning_rate": 0.3}}


def with_prefetch(value) -> dict:
    return QUICK | {"data": QUICK["data"] | {"prefetch": value}}


def train_local(spec_dict: dict):
    spec = parse_spec(spec_dict)
    return get_mode("local").run(spec, RunContext(data=load_data(spec)))


def test_prefetch_off_and_on_train_to_the_same_parameters_bitwise():
    off = train_local(with_prefetch(0))
    on = train_local(with_prefetch(1))  # 1 KiB: every batch of 20 digits (5 KiB) is gathered ahead
    default = train_local(QUICK)  # 1 MiB: these small batches are gathered inline
    assert off.history.prefetched == 0 and default.history.prefetched == 0
    steps = -(-len(load_data(parse_spec(QUICK)).y_train) // 20)
    epochs = 1 + 1 + 3  # two pretrained layers, one epoch each, then fine-tuning
    assert on.history.prefetched == epochs * (steps - 1)  # all but each epoch's first batch came ready
    np.testing.assert_array_equal(on.flat, off.flat)
    np.testing.assert_array_equal(default.flat, off.flat)
    assert [e["loss"] for e in on.history.finetune] == [e["loss"] for e in off.history.finetune]


@pytest.mark.parametrize(
    "value, problem",
    [
        (-1, "data.prefetch: must be >= 0, got -1"),
        (MAX_PREFETCH_KB + 1, f"data.prefetch: must be <= {MAX_PREFETCH_KB}, got {MAX_PREFETCH_KB + 1}"),
        ("1024", "data.prefetch: must be an integer, got '1024'"),
        (True, "data.prefetch: must be an integer, got true"),
        (0.5, "data.prefetch: must be an integer, got 0.5"),
    ],
)
def test_a_bad_prefetch_is_a_spec_error_naming_data_prefetch(value, problem):
    with pytest.raises(SpecError) as e:
        parse_spec(with_prefetch(value))
    assert e.value.problems == [problem]


def test_prefetch_defaults_to_the_old_threshold_and_engine_reads_it():
    assert parse_spec(QUICK).data.prefetch == PREFETCH_KB == 1024
    assert prefetch_bytes(0) is None and prefetch_bytes(1024) == 1 << 20
    with pytest.raises(ValueError, match="prefetch"):
        prefetch_bytes(-1)


def test_the_schema_shows_prefetch_with_its_description_and_bounds(tmp_path):
    field = json_schema()["$defs"]["DataSpec"]["properties"]["prefetch"]
    assert (field["type"], field["minimum"], field["maximum"], field["default"]) == ("integer", 0, MAX_PREFETCH_KB, PREFETCH_KB)
    assert "0: off" in field["description"] and "KiB" in field["description"]
    r = run_cli("spec", "schema")  # what a user sees
    assert r.returncode == 0
    assert json.loads(r.stdout)["$defs"]["DataSpec"]["properties"]["prefetch"] == field
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_prefetch(-5)))
    r = run_cli("spec", "check", str(bad))
    assert r.returncode == 2 and "data.prefetch: must be >= 0, got -5" in r.stderr
