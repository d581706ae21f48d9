"""A command's known failures (a bad spec, bad data, a path that is not there) as messages."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.markup import escape

from xsharp.fileguard import DataError
from xsharp.spec import SpecError

from .common import EXIT_BAD_INPUT, EXIT_FAILED, err, fail


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report known failures as one clear message and an exit code, never a traceback."""
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
