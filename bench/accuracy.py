"""Train every recipe and print its test accuracy against the floors of issue 3.

    .venv/bin/python bench/accuracy.py                 # full runs (Fashion-MNIST: tens of minutes on 2 cores)
    .venv/bin/python bench/accuracy.py --quick         # Fashion-MNIST on 10,000 rows and fewer epochs
    .venv/bin/python bench/accuracy.py --only digits   # recipes whose name holds "digits"

Each recipe trains in-process through the same path as `xsharp run` (load_data, features,
training, test split), in local mode: the training code makes N data-parallel workers compute
what one worker computes, so the mode does not change the accuracy. The peer, TF-IDF + scikit-
learn's LogisticRegression, is measured in the same run on the rotten-tomatoes recipe's own
train/test split. Spoken digits are synthesised first when data/spoken-digits is missing.
Not a test: nothing here asserts; the table says PASS or BELOW for each floor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPOKEN = ROOT / "data" / "spoken-digits"

# recipe -> floor (None: measured, no floor)
FLOORS = {
    "digits-dbn": 0.95,
    "digits-mixed": 0.95,
    "digits-mlp": 0.95,
    "digits-cnn": 0.95,
    "digits-sae": 0.95,
    "digits-elm": 0.95,
    "digits-elm-ae": 0.95,
    "digits-conv-elm": 0.95,
    "digits-sc-rbm": 0.95,
    "digits-crbm-rbm": 0.95,
    "spoken-digits-dnn": 0.90,
    "spoken-digits-cnn": 0.90,
    "rotten-tomatoes": 0.75,
    "rotten-tomatoes-word2vec": None,
    "fashion-mnist-dbn": 0.86,
    "fashion-mnist-sae": 0.86,
    "fashion-mnist-cnn": 0.90,
}

# --quick: Fashion-MNIST on a 10,000-row sample with fewer epochs (the full test split is kept)
QUICK = {
    "fashion-mnist-cnn": {"data.limit": 10000, "train.epochs": 3},
    "fashion-mnist-dbn": {"data.limit": 10000, "pretrain.epochs": 2, "train.epochs": 5},
    "fashion-mnist-sae": {"data.limit": 10000, "pretrain.epochs": 2, "train.epochs": 5},
}


def ensure_spoken_digits() -> None:
    if SPOKEN.is_dir() and any(SPOKEN.glob("*.wav")):
        return
    print(f"synthesising spoken digits into {SPOKEN} ...", file=sys.stderr)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "synth_spoken_digits.py"), str(SPOKEN)], check=True)


def train(name: str, overrides: dict) -> dict:
    from xsharp.cluster.runner import run_job
    from xsharp.spec import load_spec

    spec = load_spec(ROOT / "examples" / f"{name}.yaml", {"mode": "local", "resources.workers": 1, **overrides})
    t0 = time.perf_counter()
    result = run_job(spec)
    m = result.metrics
    return {
        "recipe": name,
        "test_accuracy": m["test_accuracy"],
        "dataset": m["dataset"],
        "epochs": f"{spec.pretrain.epochs if m['pretrain'] else 0}+{spec.train.epochs}",
        "wall_s": time.perf_counter() - t0,
        "overrides": overrides,
    }


def tfidf_logistic_regression(overrides: dict) -> dict:
    """The peer: scikit-learn TF-IDF (words and pairs) + LogisticRegression on the recipe's split."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from xsharp.algos import datasets
    from xsharp.spec import load_spec

    spec = load_spec(ROOT / "examples" / "rotten-tomatoes.yaml", overrides)
    d = spec.data
    t0 = time.perf_counter()
    data = datasets.load(
        d.dataset,
        d.path,
        d.format,
        test_fraction=d.test_fraction,
        validation_fraction=d.validation_fraction,
        seed=spec.seed,
        label_column=d.label_column,
        text_column=d.text_column,
    )
    texts = list(data.x_train) + list(data.x_val)
    labels = list(data.y_train) + list(data.y_val)
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    clf = LogisticRegression(max_iter=2000).fit(vec.fit_transform(texts), labels)
    acc = float((clf.predict(vec.transform(list(data.x_test))) == data.y_test).mean())
    return {"recipe": "peer: sklearn tfidf+LR", "test_accuracy": acc, "dataset": repr(data), "epochs": "-", "wall_s": time.perf_counter() - t0, "overrides": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Fashion-MNIST on 10,000 training rows and fewer epochs")
    parser.add_argument("--only", action="append", default=[], help="run recipes whose name contains this (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    opts = parser.parse_args()
    os.chdir(ROOT)  # recipes name data relative to the repository root
    names = [n for n in FLOORS if not opts.only or any(o in n for o in opts.only)]
    if any(n.startswith("spoken") for n in names):
        ensure_spoken_digits()

    header = f"{'recipe':<26} {'floor':>6} {'test acc':>9} {'':<5} {'epochs':>7} {'wall s':>7}  data"
    print(header)
    print("-" * len(header), flush=True)
    rows = []
    for name in names:
        overrides = QUICK.get(name, {}) if opts.quick else {}
        row = train(name, overrides)
        row["floor"] = FLOORS[name]
        rows.append(row)
        _print(row)
        if name == "rotten-tomatoes":
            peer = tfidf_logistic_regression(overrides)
            peer["floor"] = None
            rows.append(peer)
            _print(peer)
    judged = [r for r in rows if r["floor"] is not None and not r["overrides"]]
    below = [r["recipe"] for r in judged if r["test_accuracy"] < r["floor"]]
    print(f"\n{len(judged) - len(below)} of {len(judged)} full recipes at or above their floor" + (f"; below: {', '.join(below)}" if below else ""))
    if opts.quick:
        print("(--quick: Fashion-MNIST rows are a 10,000-row sample with fewer epochs; floors apply to full runs)")
    if opts.json:
        opts.json.write_text(json.dumps(rows, indent=2) + "\n")


def _print(row: dict) -> None:
    floor = row["floor"]
    verdict = "" if floor is None else ("PASS" if row["test_accuracy"] >= floor else "BELOW")
    if row["overrides"] and verdict == "BELOW":
        verdict = "quick"  # a shortened run: the floor is for the recipe as written
    floor_s = f"{100 * floor:.0f} %" if floor is not None else "-"
    extra = f" {row['overrides']}" if row["overrides"] else ""
    print(
        f"{row['recipe']:<26} {floor_s:>6} {100 * row['test_accuracy']:>7.2f} % {verdict:<5} {row['epochs']:>7} {row['wall_s']:>7.1f}  {row['dataset']}{extra}",
        flush=True,
    )


if __name__ == "__main__":
    main()
