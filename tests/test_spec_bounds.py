"""What a job spec may ask for: every number bounded, every list bounded, no bool or string where a
number goes, a model's size known without building it, and a JSON Schema that agrees with the
validators."""

import copy
import time
import tracemalloc
import types
from pathlib import Path
from typing import Annotated, Union, get_args, get_origin

import annotated_types
import jsonschema
import pytest
from pydantic import ValidationError

from xsharp.algos import Model
from xsharp.algos.features import STEPS, AugmentOptions
from xsharp.algos.model import count_parameters
from xsharp.algos.modules import MODULES, build
from xsharp.algos.modules.base import MAX_UNITS
from xsharp.searchspec import is_search
from xsharp.spec import (
    MAX_MODULES,
    DataSpec,
    JobSpec,
    ParallelSpec,
    PretrainSpec,
    Resources,
    ScheduleSpec,
    SpecError,
    TrainSpec,
    parse_spec,
    read_spec_file,
)

BASE = {"data": {"dataset": "digits"}, "model": [{"rbm": {"hidden": 4}}, "softmax"]}


def problems(data) -> list[str]:
    with pytest.raises(SpecError) as e:
        parse_spec(data)
    return e.value.problems


def spec(**sections) -> dict:
    return copy.deepcopy(BASE) | sections


# --------------------------------------------------------------------------- bounds
@pytest.mark.parametrize(
    "layer",
    [{"rbm": {"hidden": 2**31}}, {"dense": {"units": 2**31}}, {"autoencoder": {"hidden": 2**31}}, {"softmax": {"units": 2**31}}],
    ids=lambda layer: next(iter(layer)),
)
def test_unit_counts_past_the_bound_are_refused_before_anything_is_allocated(layer):
    ((kind, options),) = layer.items()
    field = next(iter(options))
    model = [layer] if kind == "softmax" else [layer, "softmax"]
    assert problems(spec(model=model)) == [f"model[0].{kind}.{field}: must be <= {MAX_UNITS}, got {2**31}"]
    assert parse_spec(spec(model=[{kind: {field: MAX_UNITS}}] if kind == "softmax" else [{kind: {field: MAX_UNITS}}, "softmax"]))


SPEC_MODELS = [
    *(cls.Options for cls in MODULES.values()),
    *(cls.Options for cls in STEPS.values()),
    AugmentOptions,
    DataSpec,
    ScheduleSpec,
    PretrainSpec,
    TrainSpec,
    Resources,
    ParallelSpec,
    JobSpec,
]


def constrained(annotation, metadata=()) -> list[tuple]:
    """(type, its constraints) for each member of a union, the field's own constraints included."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in constrained(a, metadata)]
    if get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        return constrained(base, [*metadata, *(c for x in extra for c in getattr(x, "metadata", [x]))])
    return [(annotation, list(metadata))]


@pytest.mark.parametrize("model", SPEC_MODELS, ids=lambda m: m.__name__)
def test_every_number_and_every_list_has_an_upper_bound(model):
    upper = (annotated_types.Le, annotated_types.Lt)
    for name, field in model.model_fields.items():
        for kind, metadata in constrained(field.annotation, field.metadata):
            if kind in (int, float):
                assert any(isinstance(m, upper) for m in metadata), f"{model.__name__}.{name} has no upper bound"
            if get_origin(kind) is list:
                assert any(isinstance(m, annotated_types.MaxLen) for m in metadata), f"{model.__name__}.{name} has no length bound"
                for item, item_metadata in constrained(get_args(kind)[0]):
                    if item in (int, float):
                        assert any(isinstance(m, upper) for m in item_metadata), f"{model.__name__}.{name}'s items have no upper bound"


def test_long_lists_are_refused():
    assert problems(spec(model=[{"dropout": {}}] * MAX_MODULES + ["softmax"]))[0].startswith(f"model: must have at most {MAX_MODULES} item(s), got [")
    assert problems(spec(data={"dataset": "digits", "features": ["standardize"] * 65}))[0].startswith("data.features: must have at most 64 item(s)")
    got = problems(spec(data={"path": "x", "test_speakers": [f"s{i}" for i in range(4097)]}))
    assert got[0].startswith("data.test_speakers: must be a non-empty list of at most 4096 speaker names or a share of the speakers in (0, 1), got [")
    too_many = spec(mode="pipeline", resources={"workers": 2}, parallel={"partition": [1] * (MAX_MODULES + 1)})
    assert problems(too_many)[0].startswith(f"parallel.partition: must have at most {MAX_MODULES} item(s)")
    assert problems(spec(mode="pipeline", resources={"workers": 1}, parallel={"partition": [300]})) == [
        f"parallel.partition[0]: must be <= {MAX_MODULES}, got 300"
    ]


def test_the_other_unbounded_numbers_have_bounds():
    assert problems(spec(data={"dataset": "digits", "limit": 10**12})) == ["data.limit: must be <= 1000000000, got 1000000000000"]
    assert problems(spec(data={"path": "x", "features": [{"logmel": {"fmax": 1e9}}]})) == [
        "data.features[0].logmel.fmax: must be <= 192000.0, got 1000000000.0"
    ]
    assert problems(spec(data={"path": "x", "features": [{"tfidf": {"min_count": 2**40}}]}))[0].startswith(
        "data.features[0].tfidf.min_count: must be <= 1000000000"
    )


# --------------------------------------------------------------------------- strict types
@pytest.mark.parametrize(
    "change,message",
    [
        ({"priority": True}, "priority: must be an integer, got true"),
        ({"priority": "5"}, "priority: must be an integer, got '5'"),
        ({"seed": 1.5}, "seed: must be an integer, got 1.5"),
        ({"train": {"learning_rate": True}}, "train.learning_rate: must be a number, got true"),
        ({"train": {"learning_rate": "0.1"}}, "train.learning_rate: must be a number, got '0.1'"),
        ({"resources": {"workers": "1"}}, "resources.workers: must be an integer, got '1'"),
        ({"parallel": {"overlap": 1}}, "parallel.overlap: must be true or false, got 1"),
        ({"model": [{"rbm": {"hidden": True}}, "softmax"]}, "model[0].rbm.hidden: must be an integer, got true"),
        ({"model": [{"rbm": {"hidden": 4, "persistent": "yes"}}, "softmax"]}, "model[0].rbm.persistent: must be true or false, got 'yes'"),
        ({"model": [{"dropout": {"rate": False}}, "softmax"]}, "model[0].dropout.rate: must be a number, got false"),
        ({"model": [{"softmax": {"units": True}}]}, "model[0].softmax.units: must be an integer, got true"),
        ({"data": {"dataset": "digits", "features": [{"logmel": {"n_mels": True}}]}}, "data.features[0].logmel.n_mels: must be an integer, got true"),
        ({"data": {"dataset": "digits", "augment": {"copies": "2"}}}, "data.augment.copies: must be an integer, got '2'"),
        ({"data": {"dataset": "digits", "limit": True}}, "data.limit: must be an integer, got true"),
        ({"mode": "pipeline", "resources": {"workers": 1}, "parallel": {"partition": [True]}}, "parallel.partition[0]: must be an integer, got true"),
    ],
)
def test_a_bool_or_a_string_is_not_a_number(change, message):
    assert problems(spec(**change)) == [message]


def test_nested_sections_are_still_plain_mappings_and_whole_floats_are_integers():
    got = parse_spec(spec(model=[{"rbm": {"hidden": 4.0}}, {"softmax": None}], train={"epochs": 3.0, "learning_rate": 1}, parallel={"partition": [2.0]}))
    assert got.layers[0]["rbm"]["hidden"] == 4 and type(got.layers[0]["rbm"]["hidden"]) is int
    assert type(got.train.epochs) is int and got.train.learning_rate == 1.0 and got.parallel.partition == [2]
    with pytest.raises(ValidationError):  # modules built outside a spec are as strict
        build("dense", {"units": True})


# --------------------------------------------------------------------------- count_parameters
STACKS = [
    ((8, 8), [{"dense": {"units": 5}}, {"softmax": {}}]),
    ((8, 8), [{"rbm": {"hidden": 6}}, {"autoencoder": {"hidden": 4}}, {"dropout": {}}, {"softmax": {}}]),
    (
        (1, 10, 9),
        [{"conv2d": {"filters": 3, "kernel": 3, "padding": 1}}, {"maxpool": {}}, {"batchnorm": {}}, {"avgpool": {"size": 2, "stride": 1}}, {"softmax": {}}],
    ),
    ((10, 10), [{"crbm": {"filters": 2, "kernel": 3, "stride": 2}}, {"batchnorm": {}}, {"rbm": {"hidden": 7}}, {"softmax": {"units": 4}}]),
    ((12,), [{"batchnorm": {}}, {"sparse_coding": {"atoms": 5}}, {"elm_ae": {"hidden": 6}}, {"elm": {"hidden": 9}}, {"softmax": {}}]),
    ((3, 6, 6), [{"conv2d": {"filters": 4, "kernel": 2, "stride": 2}}, {"elm": {"hidden": 5, "outputs": 4}}, {"softmax": {}}]),
]


@pytest.mark.parametrize("in_shape,layers", STACKS, ids=["-".join(next(iter(layer)) for layer in layers) for _, layers in STACKS])
def test_count_parameters_is_the_models_flat_size(in_shape, layers):
    model = Model(layers, in_shape, 4)
    assert count_parameters(layers, in_shape, 4) == model.layout.size
    for module, params, shape in zip(model.modules, model.params, model.shapes()):  # the shapes init gave, name by name, in order
        assert list(module.param_shapes(shape).items()) == [(name, a.shape) for name, a in params.items()]


def test_count_parameters_of_the_largest_layers_allocates_nothing():
    layers = [{"dense": {"units": MAX_UNITS}}, {"rbm": {"hidden": MAX_UNITS}}, {"elm": {"hidden": MAX_UNITS}}, {"softmax": {}}]
    tracemalloc.start()
    started = time.perf_counter()
    n = count_parameters(layers, (MAX_UNITS,), 10)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    u = MAX_UNITS
    assert n == (u * u + u) + (u * u + 2 * u) + (u * u + u + u * 10) + (10 * 10 + 10)
    assert peak < 1 << 20 and seconds < 1.0


def test_count_parameters_refuses_what_a_model_refuses():
    with pytest.raises(ValueError, match="does not fit"):
        count_parameters([{"maxpool": {"size": 5}}, {"softmax": {}}], (3, 3), 2)


# --------------------------------------------------------------------------- JSON Schema
AGREED = [
    BASE,
    {"data": {"path": "x.npz", "dataset": None}, "model": [{"softmax": None}]},
    {"data": {"dataset": "digits", "features": ["standardize", {"cmvn": None}, {"logmel": {"n_mels": 20}}]}, "model": ["dropout", "softmax"]},
    {"data": {"path": "x", "test_speakers": ["a"]}, "model": [{"rbm": {"hidden": 4.0}}, "softmax"], "priority": 5},
    {"data": {"path": "x", "test_speakers": 0.25}, "model": ["softmax"]},
    {"data": {"dataset": "digits"}, "model": [{"elm": {"hidden": 8}}, "softmax"], "mode": "data_parallel", "resources": {"workers": 2}},
    {"data": {"dataset": "digits"}, "model": [{"autoencoder": {"hidden": 4, "sparsity_weight": 0.1}}, "softmax"]},
    {"data": {"dataset": "digits"}, "model": [{"dense": {"units": 4}}, {"dense": {"units": 4}}, "softmax"], "mode": "pipeline", "resources": {"workers": 3}},
    # refused by both
    {"data": {}, "model": [{"dense": {"units": 1}}]},
    {"data": {}, "model": [{"softmax": {}}]},
    {"data": {"dataset": "digits", "path": "x"}, "model": [{"softmax": {}}]},
    {"data": {"dataset": "digits/x/y"}, "model": [{"softmax": {}}]},
    {"data": {"dataset": "x" * 65}, "model": [{"softmax": {}}]},
    {"data": {"path": "x", "format": "wave"}, "model": [{"softmax": {}}]},
    {"data": {"path": "x", "test_speakers": []}, "model": [{"softmax": {}}]},
    {"data": {"path": "x", "test_speakers": 1.5}, "model": [{"softmax": {}}]},
    {"data": {"dataset": "digits"}, "model": [{"dense": {"units": 1}}]},
    {"data": {"dataset": "digits"}, "model": [{"softmax": {}}, {"softmax": {}}]},
    {"data": {"dataset": "digits"}, "model": []},
    {"data": {"dataset": "digits"}, "model": ["dense", {"softmax": {}}]},
    {"data": {"dataset": "digits"}, "model": [{"dense": None}, {"softmax": {}}]},
    {"data": {"dataset": "digits"}, "model": [{"rbm": {"hidden": 4}, "x": {}}, {"softmax": {}}]},
    {"data": {"dataset": "digits"}, "model": [{"rbm": {"hidden": 4.5}}, {"softmax": {}}]},
    {"data": {"dataset": "digits"}, "model": [{"rbm": {"hidden": 2**31}}, {"softmax": {}}]},
    {"data": {"dataset": "digits"}, "model": [{"dropout": {}}] * MAX_MODULES + [{"softmax": {}}]},
    {"data": {"dataset": "digits"}, "model": [{"softmax": {}}], "priority": True},
    {"data": {"dataset": "digits"}, "model": [{"softmax": {}}], "priority": "5"},
    {"data": {"dataset": "digits"}, "model": [{"softmax": {}}], "prio": 1},
    {"data": {"dataset": "digits"}, "model": [{"softmax": {}}], "resources": {"workers": 2}},
    {"data": {"dataset": "digits"}, "model": [{"softmax": {}}], "mode": "local", "resources": {"workers": 2}},
    {"data": {"dataset": "digits"}, "model": [{"elm": {"hidden": 8}}, {"softmax": {}}], "mode": "param_server"},
    {"data": {"dataset": "digits"}, "model": [{"elm_ae": {"hidden": 8}}, {"softmax": {}}], "mode": "param_server"},
    {"data": {"dataset": "digits"}, "model": ["elm_ae", {"softmax": {}}]},  # its hidden is required: no short form
    {"data": {"dataset": "digits"}, "model": [{"autoencoder": {"hidden": 4, "activation": "relu", "sparsity_weight": 0.1}}, {"softmax": {}}]},
    {"data": {"dataset": "digits"}, "model": [{"rbm": {"hidden": 4, "persistent": 1}}, {"softmax": {}}]},
]

# Rules JSON Schema cannot say: the schema takes these, the validators refuse them.
VALIDATOR_ONLY = [
    {"data": {"dataset": "digits"}, "model": ["softmax", {"dense": {"units": 4}}]},  # softmax last (the schema: exactly one)
    {"data": {"dataset": "digits"}, "model": [{"dense": {"units": 4}}, "softmax"], "mode": "pipeline", "resources": {"workers": 3}},  # stages <= modules
    {"data": {"dataset": "digits"}, "model": ["softmax"], "mode": "hybrid", "resources": {"workers": 3}},  # workers = groups x stages
    {"data": {"dataset": "digits"}, "model": ["dropout", "softmax"], "mode": "pipeline", "resources": {"workers": 2}, "parallel": {"partition": [1, 2]}},
    {"data": {"dataset": "digits"}, "model": ["softmax"], "mode": "pipeline", "parallel": {"groups": 2}},  # pipeline runs one group
]


def parses(body) -> bool:
    try:
        parse_spec(copy.deepcopy(body))
    except SpecError:
        return False
    return True


@pytest.fixture(scope="module")
def schema_validator():
    schema = JobSpec.model_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("body", AGREED, ids=range(len(AGREED)))
def test_the_json_schema_and_the_validators_agree(schema_validator, body):
    assert schema_validator.is_valid(body) == parses(body)


@pytest.mark.parametrize("body", VALIDATOR_ONLY, ids=range(len(VALIDATOR_ONLY)))
def test_the_rules_only_the_validators_check(schema_validator, body):
    assert schema_validator.is_valid(body) and not parses(body)


def test_every_example_spec_is_valid_by_the_schema(schema_validator):
    for path in sorted(Path(__file__).parent.parent.joinpath("examples").glob("*.yaml")):
        raw = read_spec_file(path)
        if not is_search(raw):
            assert schema_validator.is_valid(raw), path.name
