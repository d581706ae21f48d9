"""A command group that imports a command's module only when that command runs: `xsharp --help`
and a light command (`xsharp jobs list`) never pay for the heavy ones' imports (the algorithms,
the data readers, the REST service)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class LazyCommand:
    """A command of the group by the name of what defines it, loaded when it is run."""

    name: str
    target: str  # "module:attribute": a typer.Typer (a command group) or a command function
    summary: str  # its help's first paragraph, as `xsharp --help` lists it (tests/test_cli_startup.py: the same as its own)

    def load(self) -> Any:
        """The click command, registered exactly as ``app.add_typer`` / ``app.command`` would."""
        module, _, attribute = self.target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
        holder = typer.Typer()
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=self.name)
        else:
            holder.command(self.name)(target)
        return typer.main.get_group(holder).commands[self.name]


class Listing(TyperCommand):
    """What the group's help lists for a command not loaded yet: its name and summary."""

    def __init__(self, entry: LazyCommand):
        super().__init__(entry.name, help=entry.summary)
        self.entry = entry


class LazyGroup(TyperGroup):
    """A TyperGroup of the :class:`LazyCommand` entries its subclass lists in ``lazy``."""

    lazy: tuple[LazyCommand, ...] = ()

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        for entry in self.lazy:
            self.commands[entry.name] = Listing(entry)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, Listing):
            entry = command.entry
            command = self.commands[entry.name] = entry.load()
        return name, command, rest
