"""`xsharp predict`: classify data with a trained model directory."""

from __future__ import annotations

import csv
import json
import zipfile
from enum import Enum
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from .common import err, fail, out, user_errors
from .run import Output


class Split(str, Enum):
    test = "test"
    val = "val"
    train = "train"


_READER_OPTIONS = ("labels", "sample_rate", "duration", "label_column", "text_column")


def _same_file(a: str, b: str | None) -> bool:
    return b is not None and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _load_rows(data: str, split: Split, saved_spec: dict | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Raw rows (and labels when known): the training data's own split when ``data`` names the
    training source, otherwise every row of a file in any data format xsharp reads."""
    from xsharp.algos import datasets

    d = (saved_spec or {}).get("data", {})
    reader = {k: d.get(k) for k in _READER_OPTIONS}
    if data in datasets.NAMED or _same_file(data, d.get("path")):
        named = data in datasets.NAMED
        ds = datasets.load(
            data if named else None,
            None if named else data,
            None if named else d.get("format"),
            test_fraction=d.get("test_fraction", 0.2),
            validation_fraction=d.get("validation_fraction", 0.1),
            limit=d.get("limit"),
            seed=(saved_spec or {}).get("seed", 0),
            test_speakers=None if named else d.get("test_speakers"),
            **reader,
        )
        x, y = getattr(ds, f"x_{split.value}"), getattr(ds, f"y_{split.value}")
        return x, y, f"{data} ({split.value} split, same split as training)"
    path = Path(data).expanduser()
    from xsharp.data.catalog import DatasetRef

    if not path.exists() and DatasetRef.looks_like(data):  # an imported dataset: its split, as stored
        return _imported_rows(data, split)
    if not path.exists():
        raise datasets.DataError(f"{data}: neither a dataset name ({', '.join(datasets.NAMED)}) nor an existing file")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False), None, str(path)
    fmt = datasets.format_of(path)
    if fmt is not None and fmt != "npz":  # every row of an IDX file, WAV folder or CSV
        arrays = datasets.FORMATS[fmt](path, **{k: v for k, v in reader.items() if v is not None})
        if split is Split.test and arrays.x_test is not None:
            return arrays.x_test, arrays.y_test, f"{path} [test]"
        return arrays.x, arrays.y, str(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise datasets.DataError(f"{path}: not a readable .npz/.npy file ({e})") from None
    for xk, yk in (("x", "y"), (f"x_{split.value}", f"y_{split.value}")):
        if xk in arrays:
            return arrays[xk], arrays.get(yk), f"{path} [{xk}]"
    raise datasets.DataError(f"{path}: expected an array x (or x_{split.value}); found {sorted(arrays)}")


def _imported_rows(ref: str, split: Split) -> tuple[np.ndarray, np.ndarray, str]:
    from xsharp.data.catalog import Catalog, local_owner
    from xsharp.data.stream import ShardedSplit
    from xsharp.fileguard import DataError

    catalog = Catalog.local()
    m = catalog.find(ref, local_owner())
    parts = list(ShardedSplit(catalog.path_of(m), m, split.value))
    if not parts:
        raise DataError(f"{m.ref}: no {split.value} rows")
    return np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]), f"{m.ref} ({split.value} split)"


def _label_indices(y: np.ndarray, classes: list[str], source: str) -> np.ndarray:
    """Labels as class indices: integers are taken as indices, anything else by class name."""
    from xsharp.algos.datasets import DataError

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
        ..., "--data", help="A dataset name (e.g. digits), a .npz/.npy file with an array x (and optionally y), or an IDX file, WAV folder or CSV file."
    ),
    split: Split = typer.Option(Split.test, "--split", help="Which split of a named dataset."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Write all predictions to this CSV file."),
    show: int = typer.Option(10, "--show", min=0, help="How many predictions to print."),
    output: Output = typer.Option(Output.text, "--output", "-o", help="text or json."),
) -> None:
    """Predict class labels with a trained model; print accuracy when labels are known.

    Example: xsharp predict runs/dbn --data digits --out predictions.csv
    """
    from xsharp.algos import Model

    path = model_dir / "model.npz" if model_dir.is_dir() else model_dir
    if not path.exists():
        raise fail(f"{path}: no model here (train one with `xsharp run SPEC --out DIR`)")
    with user_errors():
        try:
            model = Model.load(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as e:
            raise fail(f"{path}: not an xsharp model ({e})") from None
        x, y, source = _load_rows(data, split, model.spec)
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
                w.writerow(["index", "label", "class", "confidence"] + (["true_label"] if y is not None else []))
                for i, (lab, conf) in enumerate(zip(labels, confidence)):
                    w.writerow([i, int(lab), names[lab], f"{conf:.6f}"] + ([int(y[i])] if y is not None else []))
            err.print(f"wrote {len(labels)} predictions to {out_file}", markup=False)
    accuracy = float((labels == y).mean()) if y is not None and len(y) == len(labels) else None
    if output is Output.json:
        rows = [{"index": i, "label": int(labels[i]), "class": names[labels[i]], "confidence": float(confidence[i])} for i in range(len(labels))]
        out.print_json(json.dumps({"source": source, "n": len(labels), "accuracy": accuracy, "predictions": rows}))
        return
    table = Table(title=escape(f"{len(labels)} predictions on {source}"), title_justify="left")
    for col in ("index", "class", "confidence") + (("true",) if y is not None else ()):
        table.add_column(col, justify="right")
    for i in range(min(show, len(labels))):
        table.add_row(str(i), names[labels[i]], f"{confidence[i]:.3f}", *((names[int(y[i])],) if y is not None else ()))
    out.print(table)
    if accuracy is not None:
        out.print(f"accuracy: {100 * accuracy:.2f} % ({int((labels == y).sum())}/{len(labels)})")
