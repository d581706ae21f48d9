"""Every recipe in examples/ runs from a fresh clone, as a new user would run it: `git clone`,
make the data a recipe's comment says to make (scripts in the clone), then
`xsharp run examples/RECIPE.yaml --mode local` started in the clone.

Each recipe runs as written but cut small (one epoch, a few hundred rows, the first point of a
search's grid), so that all of them take about a minute on two cores."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

XSHARP = Path(sys.executable).with_name("xsharp")
ROWS = 300


def quick(recipe: dict) -> dict:
    """``recipe`` cut to one epoch on ``ROWS`` rows; a search to one trial."""
    spec = copy.deepcopy(recipe)
    spec["data"] = {**spec["data"], "limit": ROWS}
    for step in spec["data"].get("features") or []:
        for options in step.values():
            if isinstance(options, dict) and "epochs" in options:  # word2vec's own training
                options["epochs"] = 1
    spec["train"] = {**(spec.get("train") or {}), "epochs": 1}
    pre = dict(spec.get("pretrain") or {})
    if pre.get("epochs", 20):  # the default pretrains
        pre["epochs"] = 1
    spec["pretrain"] = pre
    if "search" in spec:
        spec = _first_points(spec)
        spec["search"] = {**spec["search"], **({"samples": 1} if "samples" in spec["search"] else {})}
    return spec


def _first_points(value):
    """Every ``{grid: [a, ...]}`` cut to ``{grid: [a]}``: a search of one trial."""
    if isinstance(value, dict):
        if set(value) == {"grid"}:
            return {"grid": value["grid"][:1]}
        return {k: _first_points(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_first_points(v) for v in value]
    return value


def sh(cmd: list[str], cwd: Path, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (cmd, done.stderr[-3000:])
    return done


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> dict:
    """A fresh clone of this repository, with the data its recipes' comments say to make first."""
    top = tmp_path_factory.mktemp("first-hour")
    repo = top / "xsharp"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("XSHARP_RAY_ADDRESS", "RAY_ADDRESS")}
    env["XSHARP_DATASETS"] = str(top / "datasets")  # imported datasets: this test's own catalog
    env["HOME"] = str(top / "home")
    python = sys.executable
    assert shutil.which("espeak-ng"), "espeak-ng is missing: scripts/system-deps.sh installs it"

    def spoken():  # spoken-digits-*.yaml: "python scripts/synth_spoken_digits.py data/spoken-digits", fewer voices
        sh(
            [python, "scripts/synth_spoken_digits.py", "data/spoken-digits", "--takes", "1", "--accents", "en-us", "--voices", "m1", "m3", "f4", "john"],
            repo,
            env,
        )

    def pngs():  # fashion-mnist-png-cnn.yaml: the PNG tree, imported as dataset fashion-mnist-png
        sh([python, "scripts/fashion_mnist_pngs.py", str(top / "fashion-mnist-png"), "--limit", "200"], repo, env)
        sh([str(XSHARP), "data", "import", str(top / "fashion-mnist-png"), "--name", "fashion-mnist-png", "--channels", "1"], repo, env)

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(spoken), pool.submit(pngs)]:
            f.result()
    return {"repo": repo, "env": env, "top": top}


def test_every_recipe_runs_from_a_fresh_clone(clone):
    repo, env, top = clone["repo"], clone["env"], clone["top"]
    recipes = sorted((repo / "examples").glob("*.yaml"))
    assert len(recipes) == len(list((ROOT / "examples").glob("*.yaml"))) >= 19  # every recipe is committed
    specs = top / "specs"
    specs.mkdir()

    def run(recipe: Path) -> tuple[str, subprocess.CompletedProcess, Path]:
        spec = quick(yaml.safe_load(recipe.read_text()))
        (specs / recipe.name).write_text(yaml.safe_dump(spec))
        out = top / "runs" / recipe.stem
        r = subprocess.run(
            [str(XSHARP), "run", str(specs / recipe.name), "--mode", "local", "--out", str(out)], cwd=repo, env=env, capture_output=True, text=True, timeout=240
        )
        return recipe.stem, r, out

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, recipes))
    failed = {name: r.stderr[-1500:] for name, r, _ in results if r.returncode != 0}
    assert not failed, failed
    for name, _, out in results:
        assert list(out.rglob("model.npz")), name  # a search keeps its best trial's model in best/
