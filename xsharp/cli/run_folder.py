"""The model in a folder written by `xsharp run --out`, as `xsharp predict` and `xsharp export` read it."""

from __future__ import annotations

import zipfile
from pathlib import Path

from xsharp.algos import Model

from .common import fail


def model_file(run_dir: str | Path) -> Path:
    """The model.npz of a folder written by ``xsharp run --out`` (or that file itself)."""
    run_dir = Path(run_dir)
    return run_dir / "model.npz" if run_dir.is_dir() else run_dir


def load_run_model(run_dir: str | Path) -> Model:
    """The Model of a run folder (or its model.npz); a one-line error and exit code 2 when there
    is none or it is not one."""
    path = model_file(run_dir)
    if not path.exists():
        raise fail(f"{path}: no model here (train one with `xsharp run SPEC --out DIR`)")
    try:
        return Model.load(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as e:
        raise fail(f"{path}: not an xsharp model ({e})") from None
