"""`xsharp algos list | show` as a user runs them: the installed command, in a subprocess."""

import json

import pytest

from tests.helpers import run_cli
from xsharp.algos.modules import MODULES

PRETRAINABLE = {"rbm", "autoencoder", "sparse_coding", "crbm"}


@pytest.mark.parametrize("args", [["algos"], ["algos", "list"], ["algos", "show"]])
def test_algos_commands_explain_themselves(args):
    r = run_cli(*args, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage: xsharp algos" in r.stdout


def test_list_shows_every_module_with_its_summary_and_pretraining():
    r = run_cli("algos", "list", "-o", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["modules"]
    assert [row["name"] for row in rows] == list(MODULES)
    assert {row["name"] for row in rows if row["pretrainable"]} == PRETRAINABLE
    for row in rows:
        assert row["summary"] == MODULES[row["name"]].summary
    r = run_cli("algos", "list")
    assert r.returncode == 0, r.stderr
    for kind in MODULES:
        assert kind in r.stdout
    assert "pretrain" in r.stdout and "xsharp algos show NAME" in r.stdout


def test_show_gives_each_option_with_type_default_bounds_and_description():
    r = run_cli("algos", "show", "dropout", "-o", "json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["name"] == "dropout" and info["pretrainable"] is False
    assert info["options"] == [
        {
            "name": "rate",
            "type": "float",
            "required": False,
            "default": 0.5,
            "bounds": ">= 0, < 1",
            "description": "probability that an input is zeroed during training",
        }
    ]
    r = run_cli("algos", "show", "sparse_coding", "-o", "json")
    options = {o["name"]: o for o in json.loads(r.stdout)["options"]}
    assert options["atoms"]["required"] is True and options["atoms"]["bounds"] == "> 0, <= 65536"
    assert options["algorithm"]["type"] == "one of ista | fista" and options["algorithm"]["default"] == "fista"
    assert "ISTA" in json.loads(r.stdout)["details"]  # the module's own documentation comes along
    r = run_cli("algos", "show", "batchnorm")
    assert r.returncode == 0, r.stderr
    for text in ("momentum", "0.1", "> 0, <= 1", "running", "data-parallel"):
        assert text in r.stdout, text


def test_show_of_an_unknown_module_exits_2_with_the_known_names():
    r = run_cli("algos", "show", "convnet")
    assert r.returncode == 2
    assert "unknown module 'convnet'; known: " in r.stderr
    for kind in MODULES:
        assert kind in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_every_recipe_reads_data_that_comes_with_the_clone():
    """A new user has the clone and nothing beside it: no recipe may reach into ../shared."""
    import yaml

    from tests.helpers import ROOT

    recipes = sorted((ROOT / "examples").glob("*.yaml"))
    paths = [(r.name, yaml.safe_load(r.read_text())["data"].get("path")) for r in recipes]
    named = [(name, path) for name, path in paths if path]
    assert named  # the text recipes read a file
    for name, path in named:
        target = (ROOT / path).resolve()
        assert target.is_relative_to(ROOT), (name, path)
        if not target.exists():  # data a script in the clone makes first, as the recipe says
            text = (ROOT / "examples" / name).read_text()
            made_by = [w for w in text.split() if w.startswith("scripts/")]
            assert made_by and (ROOT / made_by[0]).is_file() and path in text.split("First make the data")[1].splitlines()[0], (name, path)
    # a recipe naming an imported dataset says how to make it from what the clone has
    from xsharp.algos.datasets import NAMED

    imported = [(r, yaml.safe_load(r.read_text())["data"].get("dataset")) for r in recipes]
    imported = [(r, d) for r, d in imported if d and d not in NAMED]
    assert imported
    for recipe, dataset in imported:
        text = recipe.read_text()
        made_by = [w for w in text.split() if w.startswith("scripts/")]
        assert made_by and (ROOT / made_by[0]).is_file(), recipe.name
        assert any("xsharp data import" in line and f"--name {dataset}" in line for line in text.splitlines()), recipe.name
