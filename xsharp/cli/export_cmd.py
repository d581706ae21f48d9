"""`xsharp export`: a trained model (and its feature steps) as a portable ONNX file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from xsharp.export.graph import ExportError
from xsharp.export.onnx import export_model, raw_rows
from xsharp.export.onnx import verify as verify_file
from xsharp.files import write_atomic

from .common import err, fail, out
from .run_folder import load_run_model, model_file
from .user_errors import user_errors


class Format(str, Enum):
    onnx = "onnx"


def export(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A directory written by `xsharp run --out` (or its model.npz)."),
    out_file: Path = typer.Option(..., "--out", help="Where to write the exported model, e.g. model.onnx."),
    fmt: Format = typer.Option(Format.onnx, "--format", help="Export format (onnx: opset 17)."),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Check the file with onnxruntime against xsharp on the run's test split (needs its data here)."
    ),
) -> None:
    """Export a trained model as ONNX (opset 17), feature steps included.

    The graph takes `input` (float32 [N, *shape]: the raw rows when the model has feature steps, else the model's input shape) and gives `probabilities` (float32 [N, classes]) and `label` (int64 [N], the argmax); the class names are in its metadata (key `classes`, a JSON list).

    Modules or feature steps that ONNX cannot express exactly are refused (exit 2), naming them. With --verify (the default) the file is run with onnxruntime on the run's test split and compared with xsharp: rows, argmax agreement and the largest probability difference.

    Example: xsharp export runs/dbn --format onnx --out dbn.onnx
    """
    path, model = model_file(run_dir), load_run_model(run_dir)
    with user_errors():
        try:
            proto = export_model(model)  # a model with feature steps carries its raw row shape
        except ExportError as e:
            raise fail(f"cannot export {path} as ONNX: {e}") from None
        out_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out_file, proto.SerializeToString())
        err.print(f"wrote {out_file} (ONNX opset {proto.opset_import[0].version}, {out_file.stat().st_size:,} bytes)", markup=False)
        if not verify:
            return
        try:
            rows = raw_rows(model)
        except ExportError as e:
            raise fail(f"cannot verify: {e} (use --no-verify)") from None
        v = verify_file(model, out_file, rows)
    out.print(f"verified on the test split: {v.rows} rows, argmax agreement {100 * v.argmax_agree:.2f} %, max |Δp| {v.max_prob_diff:.2e}", markup=False)
