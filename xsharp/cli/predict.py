"""`xsharp predict`: classify data with a trained model directory."""

from __future__ import annotations

import csv
import json
from enum import Enum
from pathlib import Path

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from xsharp.algos.datasets import DataError
from xsharp.data.rows import load_rows
from xsharp.serving.inputs import input_of

from .common import Output, err, fail, out
from .run_folder import load_run_model
from .user_errors import user_errors


class Split(str, Enum):
    test = "test"
    val = "val"
    train = "train"


def _label_indices(y: np.ndarray, classes: list[str], source: str) -> np.ndarray:
    """Labels as class indices: integers are taken as indices, anything else by class name."""
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        bad = (y < 0) | (y >= len(classes))
        if bad.any():
            raise DataError(f"{source}: label {y[bad][0]} is outside the model's classes 0..{len(classes) - 1}")
        return y.astype(np.int64)
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({str(v) for v in y.tolist()} - set(index))
    if unknown:
        raise DataError(f"{source}: labels {unknown[:5]} are not among the model's classes {classes[:10]}")
    return np.array([index[str(v)] for v in y.tolist()], dtype=np.int64)


def predict(
    model_dir: Path = typer.Argument(..., metavar="MODEL_DIR", help="A directory written by `xsharp run --out` (or its model.npz)."),
    data: str = typer.Option(
        ...,
        "--data",
        help=(
            "What to classify: a dataset name (digits, fashion-mnist, rotten-tomatoes: the --split made as in training); "
            "a .npz/.npy file with an array x (and optionally y); an IDX file; a CSV of the model's columns "
            "(text models: the text column; tables: the feature columns), its label column optional; "
            "a folder of images, WAV/FLAC or .txt files (class folders optional); or - for lines of text on stdin. "
            "Accuracy is printed when the data has labels."
        ),
    ),
    split: Split = typer.Option(Split.test, "--split", help="Which split of a named dataset."),
    out_file: Path | None = typer.Option(None, "--out", help="Write all predictions to this CSV file."),
    show: int = typer.Option(10, "--show", min=0, help="How many predictions to print."),
    output: Output = typer.Option(Output.text, "--output", "-o", help="text or json."),
) -> None:
    """Predict class labels with a trained model; print accuracy when labels are known.

    Examples: xsharp predict runs/dbn --data digits --out predictions.csv;
    xsharp predict runs/reviews --data new.csv (a text column, no labels needed);
    echo "a gripping film" | xsharp predict runs/reviews --data -
    """
    model = load_run_model(model_dir)
    with user_errors():
        rows = load_rows(data, split.value, model.spec, input_of(model), model.classes)
        x, y, source, files = rows.x, rows.y, rows.source, rows.names
        if y is not None:
            y = _label_indices(y, model.classes, source)
        if model.pipeline is not None:  # the preprocessing fitted on the training rows, saved with the model
            try:
                x = model.pipeline.transform(x)
            except (ValueError, TypeError, IndexError) as e:
                raise fail(f"{source}: the model's features ({model.pipeline!r}) cannot read these rows: {e}") from None
        if int(np.prod(x.shape[1:])) != int(np.prod(model.in_shape)):
            raise fail(f"{source}: samples have shape {tuple(x.shape[1:])}, the model expects {model.in_shape}")
        x = x.reshape((x.shape[0], *model.in_shape)).astype(np.float32)
        proba = model.predict_proba(x)
        labels = proba.argmax(axis=1)
        confidence = proba.max(axis=1)
        names = model.classes
        if out_file is not None:
            with open(out_file, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["index", "label", "class", "confidence"] + (["true_label"] if y is not None else []) + (["file"] if files else []))
                for i, (lab, conf) in enumerate(zip(labels, confidence)):
                    w.writerow([i, int(lab), names[lab], f"{conf:.6f}"] + ([int(y[i])] if y is not None else []) + ([files[i]] if files else []))
            err.print(f"wrote {len(labels)} predictions to {out_file}", markup=False)
    accuracy = float((labels == y).mean()) if y is not None and len(y) == len(labels) else None
    if output is Output.json:
        preds = [
            {"index": i, "label": int(labels[i]), "class": names[labels[i]], "confidence": float(confidence[i])} | ({"file": files[i]} if files else {})
            for i in range(len(labels))
        ]
        out.print_json(json.dumps({"source": source, "n": len(labels), "accuracy": accuracy, "predictions": preds}))
        return
    table = Table(title=escape(f"{len(labels)} predictions on {source}"), title_justify="left")
    for col in ("index", "class", "confidence") + (("true",) if y is not None else ()):
        table.add_column(col, justify="right")
    if files:
        table.add_column("file", justify="left")
    for i in range(min(show, len(labels))):
        table.add_row(
            str(i),
            escape(names[labels[i]]),
            f"{confidence[i]:.3f}",
            *((escape(names[int(y[i])]),) if y is not None else ()),
            *((escape(files[i]),) if files else ()),
        )
    out.print(table)
    if accuracy is not None:
        out.print(f"accuracy: {100 * accuracy:.2f} % ({int((labels == y).sum())}/{len(labels)})")
