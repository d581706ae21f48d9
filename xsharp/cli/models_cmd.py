"""`xsharp models ...`: the server's model registry (list, show, export to ONNX, delete)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from xsharp.files import write_atomic

from .client import Client, TokenOption, UrlOption
from .common import EXIT_FAILED, Output, fail, out, unclipped

app = typer.Typer(help="Models registered by your finished jobs: list, show, export, delete.", no_args_is_help=True)


def _accuracy(m: dict) -> str:
    acc = (m.get("metrics") or {}).get("test_accuracy")
    return f"{100 * acc:.2f}%" if acc is not None else "-"


def _data(m: dict) -> str:
    if m.get("dataset"):
        return m["dataset"] + (f"@{m['dataset_version']}" if m.get("dataset_version") else "")
    return m.get("data_path") or "-"


def _table(models: list[dict], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("id", "name", "version", "user", "job", "data", "test acc", "created"):
        t.add_column(col)
    for m in models:
        t.add_row(
            str(m["id"]),
            escape(m["name"]),
            str(m["version"]),
            escape(m["user"]),
            str(m["job_id"]),
            escape(_data(m)),
            _accuracy(m),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(m["created"])),
        )
    return unclipped(t)


@app.command("list")
def models_list(
    name: str | None = typer.Option(None, "--name", help="Only this name's versions."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    output: Output = typer.Option(Output.text, "--output", "-o"),
) -> None:
    """List your registered models (an admin sees everyone's)."""
    models = Client.from_options(url, token).request("GET", "/v1/models", params={"name": name} if name else {})
    if output is Output.json:
        out.print_json(json.dumps(models))
    else:
        out.print(_table(models, f"{len(models)} model(s)"))


@app.command("show")
def models_show(
    model_id: int, url: str | None = UrlOption, token: str | None = TokenOption, output: Output = typer.Option(Output.text, "--output", "-o")
) -> None:
    """A model's lineage: its job, user, time, dataset, metrics and spec."""
    m = Client.from_options(url, token).request("GET", f"/v1/models/{model_id}")
    if output is Output.json:
        out.print_json(json.dumps(m))
        return
    out.print(_table([m], f"model {model_id}"))
    out.print("metrics: " + escape(json.dumps(m.get("metrics"))))
    out.print("spec: " + escape(json.dumps(m.get("spec"))))


@app.command("export")
def models_export(
    model_id: int,
    out_file: Path = typer.Option(..., "--out", help="Where to write the ONNX file, e.g. model.onnx."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
) -> None:
    """Download a model as an ONNX file (exported on the server)."""
    import httpx

    client = Client.from_options(url, token)
    try:
        with client._http() as http:
            r = http.get(f"/v1/models/{model_id}/onnx", timeout=300)
    except httpx.HTTPError as e:
        raise fail(f"cannot reach the xsharp server at {client.url}: {e}", EXIT_FAILED) from None
    if r.status_code >= 400:
        client._check(r)
    write_atomic(out_file, r.content)
    out.print(f"model {model_id} written to {escape(str(out_file))} ({len(r.content)} bytes)")


@app.command("delete")
def models_delete(model_id: int, url: str | None = UrlOption, token: str | None = TokenOption) -> None:
    """Take a model out of the registry (its job's artifacts stay)."""
    Client.from_options(url, token).request("DELETE", f"/v1/models/{model_id}")
    out.print(f"model {model_id} deleted")
