"""Predicting data without labels, and a wrong Ray token: the text recipes' data is a named dataset that works from
any directory, `xsharp predict` reads data without labels (a CSV of only the text or feature
columns, a folder of loose files, lines on stdin), and joining a Ray cluster with a wrong token
says so in one line.

Every model is really trained by the `xsharp` command; the second Ray is a real `ray start`."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import ROOT, TINY, run_cli
from tests.test_predict import png_bytes, tone, train_models, wav_bytes, write_data

XSHARP = Path(sys.executable).with_name("xsharp")


def run_in(cwd: Path, *args: str, stdin: str | None = None, env: dict | None = None, drop: tuple = (), timeout: float = 240) -> subprocess.CompletedProcess:
    """`run_cli` started in ``cwd``, with ``stdin`` typed in, and without the variables ``drop`` names."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("XSHARP_RAY_ADDRESS", "RAY_ADDRESS", *drop)}
    full_env.update(env or {})
    return subprocess.run([str(XSHARP), *args], input=stdin, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd)


# --------------------------------------------------------------------------- item 1: rotten-tomatoes by name
def test_rotten_tomatoes_is_a_named_dataset_that_runs_and_predicts_from_any_directory(tmp_path):
    from xsharp.algos import datasets

    ds = datasets.load("rotten-tomatoes", test_fraction=0.2, validation_fraction=0.1)
    assert ds.classes == ["fresh", "plot", "rotten"]
    assert ds.n_train + len(ds.y_val) + len(ds.y_test) == 13_905
    assert ds.x_train.dtype == object and all(isinstance(t, str) and t for t in ds.x_train[:50])

    for recipe in ("rotten-tomatoes", "rotten-tomatoes-word2vec"):
        spec = yaml.safe_load((ROOT / "examples" / f"{recipe}.yaml").read_text())
        assert spec["data"]["dataset"] == "rotten-tomatoes" and "path" not in spec["data"] and spec["data"]["features"]

    spec = yaml.safe_load((ROOT / "examples" / "rotten-tomatoes.yaml").read_text())
    spec["data"]["limit"] = 800
    spec["train"]["epochs"] = 2
    elsewhere = tmp_path / "elsewhere"  # not the repository: nothing relative to it can be found
    elsewhere.mkdir()
    (elsewhere / "rt.yaml").write_text(yaml.safe_dump(spec))
    r = run_in(elsewhere, "run", "rt.yaml", "--out", "runs/rt", "-o", "json")
    assert r.returncode == 0, r.stderr
    trained = json.loads(r.stdout)
    assert (elsewhere / "runs/rt/model.npz").is_file()

    r = run_in(elsewhere, "predict", "runs/rt", "--data", "rotten-tomatoes", "-o", "json")
    assert r.returncode == 0, r.stderr
    pred = json.loads(r.stdout)
    assert pred["n"] == 160 and pred["accuracy"] == pytest.approx(trained["test_accuracy"])  # the model's own test split
    assert {p["class"] for p in pred["predictions"]} <= {"fresh", "plot", "rotten"}


def test_the_data_ships_in_the_package_with_its_licence():
    from xsharp.algos import datasets

    here = datasets.ROTTEN_TOMATOES
    assert here.is_file() and here.is_relative_to(ROOT / "xsharp")
    readme = (here.parent / "README.md").read_text()
    assert "Apache-2.0" in readme and "rotten-tomatoes" in readme and here.name in readme
    assert '"algos/data/*"' in (ROOT / "pyproject.toml").read_text()  # installed with the package, not only in a clone
    assert not (ROOT / "examples" / "data" / here.name).exists()


# --------------------------------------------------------------------------- item 3: predict without labels
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Four tiny models, one per kind of input (images, audio, text, a table), and their data."""
    root = tmp_path_factory.mktemp("first-hour")
    specs = write_data(root)
    return {"root": root, "runs": {name: f.parent for name, f in train_models(root, specs, specs).items()}}


def predictions(r: subprocess.CompletedProcess) -> dict:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_csv_of_only_the_text_column_is_predicted_without_an_accuracy(trained, tmp_path):
    (tmp_path / "two.csv").write_text("text\ngreat superb lovely film\nawful dull poor film\n")
    pred = predictions(run_cli("predict", str(trained["runs"]["reviews"]), "--data", str(tmp_path / "two.csv"), "-o", "json"))
    assert pred["accuracy"] is None and [p["class"] for p in pred["predictions"]] == ["pos", "neg"]

    r = run_cli("predict", str(trained["runs"]["reviews"]), "--data", str(tmp_path / "two.csv"), "--out", str(tmp_path / "p.csv"))
    assert r.returncode == 0, r.stderr
    assert "accuracy" not in r.stdout and "2 predictions" in r.stdout and "pos" in r.stdout
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["class"] for row in rows] == ["pos", "neg"] and "true_label" not in rows[0]


def test_an_empty_label_column_means_no_labels_and_a_partial_one_is_refused(trained, tmp_path):
    (tmp_path / "empty.csv").write_text("text,label\ngreat superb lovely film,\nawful dull poor film,\n")
    pred = predictions(run_cli("predict", str(trained["runs"]["reviews"]), "--data", str(tmp_path / "empty.csv"), "-o", "json"))
    assert pred["accuracy"] is None and [p["class"] for p in pred["predictions"]] == ["pos", "neg"]

    (tmp_path / "labelled.csv").write_text("text,label\ngreat superb lovely film,pos\nawful dull poor film,neg\n")
    assert predictions(run_cli("predict", str(trained["runs"]["reviews"]), "--data", str(tmp_path / "labelled.csv"), "-o", "json"))["accuracy"] == 1.0

    (tmp_path / "partial.csv").write_text("text,label\ngreat superb lovely film,pos\nawful dull poor film,\n")
    r = run_cli("predict", str(trained["runs"]["reviews"]), "--data", str(tmp_path / "partial.csv"))
    assert r.returncode == 2 and "column 'label' has no label in data row 2" in r.stderr
    assert "awful" not in r.stderr and "Traceback" not in r.stderr  # the file's content is never echoed

    (tmp_path / "other.csv").write_text("review\ngreat film\n")
    r = run_cli("predict", str(trained["runs"]["reviews"]), "--data", str(tmp_path / "other.csv"))
    assert r.returncode == 2 and "no column 'text'" in r.stderr and "great" not in r.stderr


def test_lines_of_text_on_stdin(trained):
    r = run_in(
        ROOT,
        "predict",
        str(trained["runs"]["reviews"]),
        "--data",
        "-",
        "-o",
        "json",
        stdin="great superb lovely film\n\nawful dull poor film\nlovely fine film\n",
    )
    pred = predictions(r)
    assert pred["accuracy"] is None and [p["class"] for p in pred["predictions"]] == ["pos", "neg", "pos"]

    r = run_in(ROOT, "predict", str(trained["runs"]["reviews"]), "--data", "-", stdin="")
    assert r.returncode == 2 and "no lines of text on standard input" in r.stderr

    r = run_in(ROOT, "predict", str(trained["runs"]["table"]), "--data", "-", stdin="red,0.5\n")
    assert r.returncode == 2 and "standard input gives lines of text" in r.stderr and "table" in r.stderr


def test_a_table_of_only_the_feature_columns(trained, tmp_path):
    (tmp_path / "new.csv").write_text("colour,size\nred,0.2\nblue,0.5\ngreen,0.9\nred,0.9\n")
    pred = predictions(run_cli("predict", str(trained["runs"]["table"]), "--data", str(tmp_path / "new.csv"), "-o", "json"))
    assert pred["accuracy"] is None and [p["class"] for p in pred["predictions"]] == ["warm", "cold", "cold", "warm"]

    (tmp_path / "labelled.csv").write_text("colour,size,label\nred,0.2,warm\nblue,0.5,cold\n")
    assert predictions(run_cli("predict", str(trained["runs"]["table"]), "--data", str(tmp_path / "labelled.csv"), "-o", "json"))["accuracy"] == 1.0


def test_a_folder_of_loose_images(trained, tmp_path):
    from xsharp.algos import datasets

    ds = datasets.load("digits", limit=600, seed=1)  # the rows the digits model was tested on
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(40):
        (folder / f"scan-{i:02d}.png").write_bytes(png_bytes(np.round(ds.x_test[i].reshape(8, 8) * 255)))
    (folder / "notes.csv").write_text("not an image\n")  # other files are left alone
    r = run_cli("predict", str(trained["runs"]["digits"]), "--data", str(folder), "-o", "json")
    pred = predictions(r)
    assert pred["n"] == 40 and pred["accuracy"] is None
    assert [p["file"] for p in pred["predictions"]] == [f"scan-{i:02d}.png" for i in range(40)]
    right = sum(int(p["class"]) == int(ds.y_test[i]) for i, p in enumerate(pred["predictions"]))
    assert right >= 32, right  # the digits read from PNGs are the digits

    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    r = run_cli("predict", str(trained["runs"]["digits"]), "--data", str(folder))
    assert r.returncode == 2 and "broken.png: not a readable image" in r.stderr


def test_a_folder_of_loose_wavs_and_of_labelled_ones(trained, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    expected = []
    for i, (name, freq) in enumerate((("a", 305.0), ("b", 1980.0), ("c", 2040.0), ("d", 290.0))):
        (clips / f"{name}.wav").write_bytes(wav_bytes(tone(freq, phase=i)))
        expected.append("low" if freq < 1000 else "high")
    r = run_cli("predict", str(trained["runs"]["tones"]), "--data", str(clips))
    assert r.returncode == 0, r.stderr
    assert "accuracy" not in r.stdout and "a.wav" in r.stdout and "4 predictions" in r.stdout
    pred = predictions(run_cli("predict", str(trained["runs"]["tones"]), "--data", str(clips), "-o", "json"))
    assert [p["class"] for p in pred["predictions"]] == expected and pred["accuracy"] is None

    named = tmp_path / "named"  # {label}_{speaker}_{index}.wav with the model's labels: scored
    named.mkdir()
    for i, label in enumerate(expected):
        shutil.copy(clips / f"{'abcd'[i]}.wav", named / f"{label}_s9_{i}.wav")
    pred = predictions(run_cli("predict", str(trained["runs"]["tones"]), "--data", str(named), "-o", "json"))
    assert pred["accuracy"] == 1.0 and pred["n"] == 4


def test_predict_help_says_what_data_it_takes():
    r = run_cli("predict", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.replace("│", " ").split())  # the words, out of rich's box
    for words in ("rotten-tomatoes", "label column optional", "class folders optional", "- for lines of text on stdin"):
        assert words in text, words


# --------------------------------------------------------------------------- item 4: a wrong Ray token
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def second_ray(tmp_path_factory):
    """A second real Ray (token auth on, its own temp dir and ports), stopped after the test
    without touching the session's Ray."""
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    temp = Path("/tmp") / f"xr{port}"  # Ray's socket paths must stay short
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "b" * 32, "HOME": str(tmp_path_factory.mktemp("ray-home"))}
    cmd = [
        str(ray_bin),
        "start",
        "--head",
        f"--port={port}",
        "--num-cpus=1",
        "--include-dashboard=false",
        f"--temp-dir={temp}",
        "--object-store-memory=100000000",
        "--disable-usage-stats",
    ]
    started = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _stop_ray(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_ray(temp: Path) -> None:
    """Kill the processes of the Ray whose temp dir is ``temp``, and their children (its agents
    and workers): only those, never the session's Ray."""
    parents, ours = {}, set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if str(temp) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                ours.add(int(proc.name))
            status = (proc / "status").read_text()
            parents[int(proc.name)] = int(status.split("PPid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
    ours |= {pid for pid, parent in parents.items() if parent in ours}
    for pid in ours:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    time.sleep(0.5)


@pytest.mark.parametrize("mode", ["token", None])
def test_a_wrong_ray_token_is_one_clear_line(second_ray, tmp_path, mode):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    env = {"RAY_AUTH_TOKEN": "w" * 32, "HOME": str(tmp_path)}
    if mode:
        env["RAY_AUTH_MODE"] = mode
    r = run_in(
        tmp_path,
        "run",
        "tiny.yaml",
        "--mode",
        "data_parallel",
        "--workers",
        "1",
        "--address",
        second_ray,
        env=env,
        drop=() if mode else ("RAY_AUTH_MODE",),
        timeout=180,
    )
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    error = [line for line in lines if line.startswith("error:")]
    assert len(error) == 1 and lines[-1] == error[0], r.stderr
    assert f"Ray at {second_ray} refused this client's auth token" in error[0]
    for words in ("RAY_AUTH_TOKEN", "~/.ray/auth_token", "RAY_AUTH_TOKEN_PATH"):
        assert words in error[0], words
    assert ("RAY_AUTH_MODE is not set here, so no token was sent: set RAY_AUTH_MODE=token" in error[0]) == (mode is None)
    assert "gcs_client.cc" not in r.stderr and "Unauthenticated" not in r.stderr and "Traceback" not in r.stderr
    assert "w" * 32 not in r.stderr  # the token itself is never shown
    log = Path(error[0].split("(Ray's log: ")[1].rstrip(")"))
    assert "InvalidAuthToken" in log.read_text()  # Ray's own lines are kept, in the file the message names
    log.unlink()


def test_what_a_hostile_review_found_in_predict_without_labels(trained, tmp_path):
    """Standard input's cap is a line's, not the whole input's; a .gz cut short is a one-line error;
    a loose file is refused from its size without being read whole."""
    import gzip

    run = trained["runs"]["reviews"]
    many = "a great film\n" * 100_000  # 1.3 MB of short lines: refused before as one row over 1 MiB
    r = subprocess.run(
        [str(Path(sys.executable).with_name("xsharp")), "predict", str(run), "--data", "-", "--show", "0"],
        input=many,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0 and "100000 predictions on standard input" in r.stdout.replace(",", ""), r.stderr
    packed = gzip.compress(("text\n" + "a good film\n" * 20_000).encode())
    (tmp_path / "cut.csv.gz").write_bytes(packed[: len(packed) // 2])
    r = run_cli("predict", str(run), "--data", str(tmp_path / "cut.csv.gz"))
    assert r.returncode == 2 and f"{tmp_path / 'cut.csv.gz'}: not a readable CSV file" in r.stderr and "Aborted" not in r.stderr, r.stderr
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "a.txt").write_text("a fine film")
    with open(loose / "b.txt", "wb") as f:
        f.truncate(80 << 20)  # sparse: 80 MB that take no disk
    r = run_cli("predict", str(run), "--data", str(loose))
    assert r.returncode == 2 and f"{loose / 'b.txt'}: over {64 << 20} bytes" in r.stderr, r.stderr
