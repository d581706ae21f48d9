"""`xsharp submit`: a job spec, checked here first, into the xsharp server's queue."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from xsharp.cluster.search import trial_specs
from xsharp.searchspec import is_search
from xsharp.spec import parse_spec, read_spec_file

from .client import Client, TokenOption, UrlOption
from .common import Output, out
from .spec_overrides import SET_HELP, apply_sets
from .user_errors import user_errors


def submit(
    spec_file: Path = typer.Argument(..., metavar="SPEC.yaml", help="The job spec."),
    priority: int | None = typer.Option(None, "--priority", "-p", min=-100, max=100, help="Overrides the spec's priority; higher runs first."),
    sets: list[str] | None = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    output: Output = typer.Option(Output.text, "--output", "-o"),
) -> None:
    """Submit SPEC.yaml to the xsharp server's queue and print the job id.

    The spec is checked here first; a bad field exits 2 without contacting the server. The server then checks what only it can: that data.path exists and may be read there, and that the workers fit its cluster. A spec with ranges, grids or `auto` is submitted as one search job: its trials run in parallel inside the job's reservation, and pausing it keeps every finished trial.
    """
    with user_errors():
        raw = apply_sets(read_spec_file(spec_file, {"priority": priority} if priority is not None else None), sets, str(spec_file))
        if is_search(raw):
            trial_specs(raw)  # every trial is checked here first, as a job spec is
            path, body = "/v1/searches", raw
        else:
            path, body = "/v1/jobs", parse_spec(raw, str(spec_file)).to_dict()
    job = Client.from_options(url, token).request("POST", path, json=body)
    if output is Output.json:
        out.print_json(json.dumps(job))
    else:
        out.print(f"submitted job {job['id']} ({escape(job['name'])}), {job['state']}, priority {job['priority']}")
