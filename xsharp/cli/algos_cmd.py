"""`xsharp algos`: the module library a job spec's `model` list is written in, and the recipes
(examples/*.yaml) built from it."""

from __future__ import annotations

import inspect
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from xsharp.algos.modules import MODULES

from .common import Output, fail, out

app = typer.Typer(help="The algorithm toolkit: list the modules a job spec can stack and the recipes built from them, show one.", no_args_is_help=True)

_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"  # the recipes, in a source checkout


def recipes() -> dict[str, dict]:
    """Every examples/*.yaml by name: what its leading comment says, its module stack and mode."""
    found = {}
    for path in sorted(EXAMPLES.glob("*.yaml")) if EXAMPLES.is_dir() else []:
        text = path.read_text()
        comment = []
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("#").strip())
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError:
            raw = None
        raw = raw if isinstance(raw, dict) else {}
        model = raw.get("model") if isinstance(raw.get("model"), list) else []
        kinds = [item if isinstance(item, str) else next(iter(item), "?") if isinstance(item, dict) else "?" for item in model]
        found[path.stem] = {
            "name": path.stem,
            "description": " ".join(comment),
            "model": " -> ".join(kinds),
            "mode": "search" if "search" in raw else str(raw.get("mode", "local")),
            "path": str(path),
            "yaml": text,
        }
    return found


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
        "solved": hasattr(cls, "solve"),
        "options": options,
        "details": inspect.getdoc(sys.modules[cls.__module__]) or "",
    }


def _first_sentence(text: str, limit: int = 100) -> str:
    first = text.split(". ")[0].split(": ")[0].rstrip(".")
    return first if len(first) <= limit else first[: limit - 1] + "…"


@app.command("list")
def list_modules(
    output: Output = typer.Option(Output.text, "--output", "-o", help="text: a table; json: the same rows as JSON on stdout."),
) -> None:
    """List every module a job spec's `model` can stack (name, what it is, whether it is pretrained
    before fine-tuning: greedily by steps, or solved in closed form), then the recipes."""
    rows = [
        {"name": kind, "summary": cls.summary, "pretrainable": hasattr(cls, "pretrain_step"), "solved": hasattr(cls, "solve")} for kind, cls in MODULES.items()
    ]
    books = [{k: v for k, v in r.items() if k != "yaml"} for r in recipes().values()]
    if output is Output.json:
        out.print_json(json.dumps({"modules": rows, "recipes": books}))
        return
    table = Table(title="modules", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("pretrain")
    table.add_column("summary")
    for row in rows:
        table.add_row(row["name"], "yes" if row["pretrainable"] else "solve" if row["solved"] else "-", escape(row["summary"]))
    out.print(table)
    if books:
        table = Table(title="recipes (examples/)", title_justify="left")
        for column in ("name", "model", "mode", "description"):
            table.add_column(column, style="bold" if column == "name" else None)
        for r in books:
            table.add_row(r["name"], escape(r["model"]), r["mode"], escape(_first_sentence(r["description"])))
        out.print(table)
    out.print("Options of one module, or one recipe: xsharp algos show NAME; train a recipe: xsharp run examples/NAME.yaml")


@app.command()
def show(
    name: str = typer.Argument(..., metavar="NAME", help="A module or recipe name from `xsharp algos list`."),
    output: Output = typer.Option(Output.text, "--output", "-o", help="text: a table; json: the description as JSON on stdout."),
) -> None:
    """Show one module's options (type, default, bounds, meaning) as written under its name in a
    job spec, or one recipe's spec."""
    if name not in MODULES:
        book = recipes().get(name)
        if book is None:
            raise fail(f"unknown module {name!r}; known: {', '.join(MODULES)}; recipes: {', '.join(recipes()) or '(none here)'}")
        if output is Output.json:
            out.print_json(json.dumps(book))
            return
        out.print(f"[bold]{name}[/] ({escape(book['path'])}): {escape(book['model'])}, mode {book['mode']}")
        out.print(book["yaml"], markup=False)
        out.print(f"train it: xsharp run {escape(book['path'])}")
        return
    info = describe(name)
    if output is Output.json:
        out.print_json(json.dumps(info))
        return
    out.print(f"[bold]{name}[/]: {escape(info['summary'])}")
    solved = "solved in closed form (its own phase, even with pretraining off)"
    out.print(f"pretrained before fine-tuning: {'yes' if info['pretrainable'] else solved if info['solved'] else 'no'}")
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
