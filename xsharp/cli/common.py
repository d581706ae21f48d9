"""What every command shares: consoles, the exit codes, a failure as a one-line message, tables that fit.

Kept light: every command imports it, `xsharp --help` included."""

from __future__ import annotations

from enum import Enum

import typer
from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.text import Text

EXIT_FAILED = 1  # the work failed (a worker died, Ray unreachable)
EXIT_BAD_INPUT = 2  # the user's input is wrong: bad spec, missing data, does not fit

out = Console(highlight=False, soft_wrap=True)  # results: stdout; no hard wraps, logs stay greppable
err = Console(stderr=True, highlight=False, soft_wrap=True)  # progress, status, errors: stderr


class Output(str, Enum):
    """``--output/-o`` of every command that prints data: text (tables, a summary) or json (the same data on stdout)."""

    text = "text"
    json = "json"


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


# --------------------------------------------------------------------------- tables
def unclipped(table, keep: int = 16, width: int | None = None):
    """``table`` with no cell cut short by an ellipsis in a narrow terminal: a column whose
    longest word has at most ``keep`` characters (a state, a mode, a number) is never narrower
    than that word while the table still fits ``width`` (default: stdout's), and every cell wraps
    at spaces, then folds a longer word onto the next line."""
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
    try:
        return Text.from_markup(markup).plain
    except MarkupError:
        return markup
