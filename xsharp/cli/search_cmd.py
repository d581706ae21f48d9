"""`xsharp search show`, and the table of a search's trials (`xsharp run` on a search spec: :mod:`.run_search`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from .client import Client
from .common import Output, fail, out, unclipped

app = typer.Typer(help="Hyper-parameter searches: show the trials of one.", no_args_is_help=True)


def format_value(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def trials_table(trials: list[dict], params: list[str], title: str, best: int | None = None) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ["trial", *params, "state", "epochs", "val acc", "test acc", "time"]:
        t.add_column(escape(col), justify="right")
    for tr in trials:
        mark = " *" if tr["id"] == best else ""
        acc = f"{100 * tr['metric']:.2f}%" if tr.get("metric") is not None else "-"
        test = f"{100 * tr['test_accuracy']:.2f}%" if tr.get("test_accuracy") is not None else "-"
        state = tr["state"] + (f": {tr['error']}" if tr.get("error") else "")
        t.add_row(f"{tr['id']}{mark}", *(format_value(tr["params"][p]) for p in params), escape(state), str(tr["epochs"]), acc, test, f"{tr['seconds']:.1f}s")
    return unclipped(t)


@app.command("show")
def show(
    target: str = typer.Argument(..., help="A search's output folder (with search.json), or a job id on the xsharp server."),
    url: str | None = typer.Option(None, "--url", envvar="XSHARP_URL", help="The xsharp server, for a job id."),
    token: str | None = typer.Option(None, "--token", envvar="XSHARP_TOKEN", help="Your API token, for a job id."),
    output: Output = typer.Option(Output.text, "--output", "-o"),
) -> None:
    """Print the table of a search's trials: parameters, metric, epochs run, time."""
    path = Path(target) / "search.json" if not target.endswith(".json") else Path(target)
    if path.exists():
        data = json.loads(path.read_text())
    elif target.isdigit():
        # the live table while the search runs, the finished one after
        got = Client.from_options(url, token).request("GET", f"/v1/searches/{target}")
        data = json.loads(got) if isinstance(got, str) else got
    else:
        raise fail(f"{target}: no search.json there, and not a job id")
    if output is Output.json:
        out.print_json(json.dumps(data))
        return
    state = "" if data.get("final", True) else f" (job {data['job']['state']}, so far)"
    out.print(
        trials_table(data["trials"], data["params"], f"{len(data['trials'])} trials, {data['settings'].get('strategy', 'grid')}{state}", data.get("best"))
    )
