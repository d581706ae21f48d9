"""`xsharp spec`: the job spec's schema, and checking a spec file without running it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from xsharp.spec import json_schema, load_spec

from .common import out
from .user_errors import user_errors

app = typer.Typer(help="Job specs: print the schema, check a file.", no_args_is_help=True)


@app.command()
def schema() -> None:
    """Print the JSON schema of a job spec (the same schema the REST endpoint accepts)."""
    out.print_json(json.dumps(json_schema()))


@app.command()
def check(spec_file: Path = typer.Argument(..., metavar="SPEC.yaml", help="The spec to check.")) -> None:
    """Validate SPEC.yaml and print it with every default filled in; exit 2 naming each bad field."""
    with user_errors():
        spec = load_spec(spec_file)
    out.print(spec.to_yaml(), end="", markup=False)
