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


# --------------------------------------------------------------------------- --set KEY=VALUE
SET_HELP = (
    "Override one spec value by its dotted path, VALUE read as YAML (repeatable; applied after the file and the other options), "
    "e.g. --set train.epochs=3 --set data.limit=500 --set model[0].rbm.hidden=64. The result is validated like the file."
)


def _set_path(key: str) -> list:
    """``model[0].rbm.hidden`` -> ["model", 0, "rbm", "hidden"]; ValueError for a malformed path."""
    import re

    steps: list = []
    for part in key.split("."):
        m = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", part)
        if not m:
            raise ValueError("not a dotted path (NAME, NAME.NAME, NAME[INDEX].NAME)")
        steps.append(m.group(1))
        steps.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return steps


def apply_sets(raw, sets: list[str] | None, source: str):
    """The spec ``raw`` (as read from its YAML) with each ``KEY=VALUE`` of ``--set`` applied.

    A missing section is created; a list is indexed (``model[0]``), and a module given by its
    name alone (``- softmax``) becomes a mapping when a field of it is set. The spec is validated
    afterwards by its usual parser; here only a malformed path or value is a SpecError."""
    import yaml

    from xsharp.spec import SpecError

    if not sets:
        return raw
    if not isinstance(raw, dict):
        return raw  # the spec's own validation says it is not a mapping
    problems = []
    for item in sets:
        key, eq, text = item.partition("=")
        key = key.strip()
        where = f"--set {key or item}"
        if not eq or not key:
            problems.append(f"{where}: expected KEY=VALUE, e.g. --set train.epochs=3")
            continue
        try:
            steps = _set_path(key)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            problems.append(f"{where}: the value {text!r} is not valid YAML ({getattr(e, 'problem', e)})")
            continue
        problem = _assign(raw, steps, value)
        if problem:
            problems.append(f"{where}: {problem}")
    if problems:
        raise SpecError(problems, source)
    return raw


def _label(steps: list) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")


def _assign(node, steps: list, value) -> str | None:
    """Set ``value`` at ``steps`` under ``node``; a message when the path does not lead anywhere."""
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        here = _label(steps[:i]) or "the spec"
        if isinstance(step, int):
            if not isinstance(node, list):
                return f"{here} is not a list, so it has no [{step}]"
            if step >= len(node):
                return f"{here} has {len(node)} entries (indexes 0 to {len(node) - 1}), no [{step}]"
            if last:
                node[step] = value
                return None
            if isinstance(node[step], str) and isinstance(steps[i + 1], str) and steps[i + 1] == node[step]:
                node[step] = {node[step]: {}}  # `- softmax` is `- softmax: {}`
            node = node[step]
            continue
        if not isinstance(node, dict):
            if isinstance(node, str) and i > 0 and isinstance(steps[i - 1], int):
                return f"{here} is the module {node!r}, not {step!r}"
            return f"{here} is a value ({node!r}), not a section with fields"
        if last:
            node[step] = value
            return None
        child = node.get(step)
        if child is None:
            node[step] = child = [] if isinstance(steps[i + 1], int) else {}
        elif isinstance(child, str) and isinstance(steps[i + 1], str) and steps[i + 1] == child:
            node[step] = child = {child: {}}
        node = child
    return None


# --------------------------------------------------------------------------- tables
def unclipped(table, keep: int = 16, width: int | None = None):
    """``table`` with no cell cut short by an ellipsis in a narrow terminal: a column whose
    longest word has at most ``keep`` characters (a state, a mode, a number) is never narrower
    than that word while the table still fits ``width`` (default: stdout's), and every cell wraps
    at spaces, then folds a longer word onto the next line."""
    from rich.text import Text

    floors: dict[int, int] = {}  # column index -> its longest word
    for i, col in enumerate(table.columns):
        words = []
        for cell in col._cells:  # not the header: a header folds before a value does
            plain = cell.plain if isinstance(cell, Text) else _plain(cell) if isinstance(cell, str) else ""
            words.extend(plain.split())
        longest = max((len(w) for w in words), default=0)
        if 0 < longest <= keep:
            floors[i] = longest
        col.overflow = "fold"
        col.no_wrap = False
    room = (width or out.size.width) - (3 * len(table.columns) + 1)  # borders and padding
    while floors and sum(floors.values()) > room:  # too narrow for every floor: the widest gives way
        del floors[max(floors, key=floors.get)]
    for i, floor in floors.items():
        col = table.columns[i]
        col.min_width = max(col.min_width or 0, floor)
    return table


def _plain(markup: str) -> str:
    from rich.errors import MarkupError
    from rich.text import Text

    try:
        return Text.from_markup(markup).plain
    except MarkupError:
        return markup
