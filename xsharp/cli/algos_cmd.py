"""`xsharp algos`: the module library a job spec's `model` list is written in."""

from __future__ import annotations

import inspect
import json
import sys
import types
import typing
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from .common import fail, out
from .run import Output

app = typer.Typer(help="The algorithm toolkit: list the modules a job spec can stack, show one's options.", no_args_is_help=True)

_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def _type_name(annotation: Any) -> str:
    """A spec writer's name for an option's type: int, float, bool, one of a|b, ... (optional)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        name = " | ".join(_type_name(a) for a in rest)
        return f"{name} (optional)" if len(rest) < len(args) else name
    return {int: "int", float: "float", bool: "bool", str: "string"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(field: Any) -> str:
    parts = []
    for item in field.metadata:
        for attr, symbol in _BOUNDS:
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{symbol} {value:g}")
    return ", ".join(parts)


def describe(kind: str) -> dict:
    """Everything `algos show` prints about one module, as plain data."""
    from xsharp.algos.modules import MODULES

    cls = MODULES[kind]
    options = []
    for name, field in cls.Options.model_fields.items():
        required = field.is_required()
        options.append(
            {
                "name": name,
                "type": _type_name(field.annotation),
                "required": required,
                "default": None if required else field.default,
                "bounds": _bounds(field),
                "description": field.description or "",
            }
        )
    return {
        "name": kind,
        "summary": cls.summary,
        "pretrainable": hasattr(cls, "pretrain_step"),
        "options": options,
        "details": inspect.getdoc(sys.modules[cls.__module__]) or "",
    }


@app.command("list")
def list_modules(
    output: Output = typer.Option(Output.text, "--output", "-o", help="text: a table; json: the same rows as JSON on stdout."),
) -> None:
    """List every module a job spec's `model` can stack: name, what it is, and whether it is pretrained (greedy, unsupervised) before fine-tuning."""
    from xsharp.algos.modules import MODULES

    rows = [{"name": kind, "summary": cls.summary, "pretrainable": hasattr(cls, "pretrain_step")} for kind, cls in MODULES.items()]
    if output is Output.json:
        out.print_json(json.dumps({"modules": rows}))
        return
    table = Table(title="modules", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("pretrain")
    table.add_column("summary")
    for row in rows:
        table.add_row(row["name"], "yes" if row["pretrainable"] else "-", escape(row["summary"]))
    out.print(table)
    out.print("Options of one module: xsharp algos show NAME")


@app.command()
def show(
    name: str = typer.Argument(..., metavar="NAME", help="A module name from `xsharp algos list`."),
    output: Output = typer.Option(Output.text, "--output", "-o", help="text: a table; json: the description as JSON on stdout."),
) -> None:
    """Show one module's options (type, default, bounds, meaning) as written under its name in a job spec."""
    from xsharp.algos.modules import MODULES

    if name not in MODULES:
        raise fail(f"unknown module {name!r}; known: {', '.join(MODULES)}")
    info = describe(name)
    if output is Output.json:
        out.print_json(json.dumps(info))
        return
    out.print(f"[bold]{name}[/]: {escape(info['summary'])}")
    out.print(f"pretrained before fine-tuning: {'yes' if info['pretrainable'] else 'no'}")
    table = Table(title="options", title_justify="left")
    for column in ("option", "type", "default", "bounds", "description"):
        table.add_column(column)
    for o in info["options"]:
        default = "(required)" if o["required"] else json.dumps(o["default"])
        table.add_row(o["name"], escape(o["type"]), escape(default), o["bounds"], escape(o["description"]))
    out.print(table)
    if info["details"]:
        out.print()
        out.print(info["details"], markup=False)
