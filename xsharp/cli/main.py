"""The `xsharp` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from xsharp import __version__

from . import algos_cmd, appliance_cmd, cluster_up_cmd, data_cmd, export_cmd, jobs_cmd, models_cmd, search_cmd, serve_cmd, server_cmd, spec_cmd
from .predict import predict
from .run import run

app = typer.Typer(
    name="xsharp",
    help="xsharp: train deep models on an on-prem GPU cluster (or this machine) with Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(run)
app.command()(predict)
app.command()(export_cmd.export)
app.add_typer(spec_cmd.app, name="spec")
app.command()(appliance_cmd.exporter)
app.add_typer(appliance_cmd.app, name="appliance")
app.add_typer(algos_cmd.app, name="algos")
app.command()(server_cmd.server)
app.command()(serve_cmd.serve)
app.add_typer(server_cmd.users_app, name="users")
app.command()(jobs_cmd.submit)
app.add_typer(jobs_cmd.jobs_app, name="jobs")
app.add_typer(jobs_cmd.cluster_app, name="cluster")
jobs_cmd.cluster_app.command("up")(cluster_up_cmd.cluster_up)
app.add_typer(search_cmd.app, name="search")
app.add_typer(data_cmd.app, name="data")
app.add_typer(models_cmd.app, name="models")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xsharp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    pass


def main() -> None:
    app()


if __name__ == "__main__":
    main()
