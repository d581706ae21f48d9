"""`xsharp users`: users and API tokens, written into the job store directly on the server host."""

from __future__ import annotations

from pathlib import Path

import typer

from xsharp.cluster.store import Store

from .common import out

app = typer.Typer(help="Users and API tokens (run on the server host; writes the job store directly).", no_args_is_help=True)


@app.command("add")
def users_add(
    name: str = typer.Argument(..., help="User name."),
    admin: bool = typer.Option(False, "--admin", help="May see and manage every user's jobs."),
    home_dir: Path | None = typer.Option(None, "--home", envvar="XSHARP_HOME", help="The server's store (default ~/.xsharp)."),
) -> None:
    """Create a user (or add a token to an existing one) and print a new token."""
    out.print(Store(home_dir).add_user(name, admin=admin), markup=False)


@app.command("list")
def users_list(home_dir: Path | None = typer.Option(None, "--home", envvar="XSHARP_HOME", help="The server's store.")) -> None:
    """List users."""
    for u in Store(home_dir).users():
        out.print(f"{u.name}{' (admin)' if u.admin else ''}", markup=False)
