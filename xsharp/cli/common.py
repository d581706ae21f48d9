"""What every command shares: consoles, the exit codes, and turning errors into messages."""

from __future__ import annotations

import contextlib
from typing import Iterator

import typer
from rich.console import Console
from rich.markup import escape

EXIT_FAILED = 1  # the work failed (a worker died, Ray unreachable)
EXIT_BAD_INPUT = 2  # the user's input is wrong: bad spec, missing data, does not fit

out = Console(highlight=False, soft_wrap=True)  # results: stdout; no hard wraps, logs stay greppable
err = Console(stderr=True, highlight=False, soft_wrap=True)  # progress, status, errors: stderr


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def model_file(run_dir):
    """The model.npz of a folder written by ``xsharp run --out`` (or that file itself)."""
    from pathlib import Path

    run_dir = Path(run_dir)
    return run_dir / "model.npz" if run_dir.is_dir() else run_dir


def load_run_model(run_dir):
    """The Model of a run folder (or its model.npz); a one-line error and exit code 2 when there
    is none or it is not one."""
    import zipfile

    from xsharp.algos import Model

    path = model_file(run_dir)
    if not path.exists():
        raise fail(f"{path}: no model here (train one with `xsharp run SPEC --out DIR`)")
    try:
        return Model.load(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as e:
        raise fail(f"{path}: not an xsharp model ({e})") from None


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report known failures as one clear message and an exit code, never a traceback."""
    from xsharp.algos.datasets import DataError
    from xsharp.spec import SpecError

    try:
        yield
    except SpecError as e:
        err.print(f"[bold red]error:[/] invalid job spec {escape(e.source)}")
        for problem in e.problems:
            err.print(f"  {problem}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except DataError as e:
        raise fail(f"data: {e}") from None
    except (FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        raise fail(f"{e.filename}: {e.strerror}" if e.filename else str(e)) from None  # a path the user gave
    except OSError as e:  # a full disk, an I/O error: the run failed, the input may be fine
        raise fail(f"{e.filename}: {e.strerror}" if e.filename else str(e), EXIT_FAILED) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: workers stopped, Ray shut down")
        raise typer.Exit(130) from None
