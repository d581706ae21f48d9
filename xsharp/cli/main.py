"""The `xsharp` command: one Typer app, one module per command group, each imported only when its
command runs (:mod:`xsharp.cli.lazy_group`), so that start-up stays light."""

from __future__ import annotations

import typer

from xsharp import __version__

from .lazy_group import LazyCommand, LazyGroup

COMMANDS = (  # in the order `xsharp --help` lists them
    LazyCommand("run", "xsharp.cli.run:run", "Train a model from SPEC.yaml and report test accuracy and throughput."),
    LazyCommand("predict", "xsharp.cli.predict:predict", "Predict class labels with a trained model; print accuracy when labels are known."),
    LazyCommand("export", "xsharp.cli.export_cmd:export", "Export a trained model as ONNX (opset 17), feature steps included."),
    LazyCommand(
        "exporter", "xsharp.cli.appliance_cmd:exporter", "Serve this node's GPU, host, health and job metrics for Prometheus at http://HOST:PORT/metrics."
    ),
    LazyCommand("server", "xsharp.cli.server_cmd:server", "Serve the REST API (docs at /docs) and schedule jobs on Ray until Ctrl-C."),
    LazyCommand("serve", "xsharp.cli.serve_cmd:serve", "Serve a registered model on the Ray cluster with Ray Serve until Ctrl-C."),
    LazyCommand("submit", "xsharp.cli.submit_cmd:submit", "Submit SPEC.yaml to the xsharp server's queue and print the job id."),
    LazyCommand("spec", "xsharp.cli.spec_cmd:app", "Job specs: print the schema, check a file."),
    LazyCommand("appliance", "xsharp.cli.appliance_cmd:app", "Monitoring for the appliance: Prometheus config, alert rules, Grafana dashboards, node health."),
    LazyCommand("algos", "xsharp.cli.algos_cmd:app", "The algorithm toolkit: list the modules a job spec can stack and the recipes built from them, show one."),
    LazyCommand("users", "xsharp.cli.users_cmd:app", "Users and API tokens (run on the server host; writes the job store directly)."),
    LazyCommand("jobs", "xsharp.cli.jobs_cmd:jobs_app", "Your jobs on the xsharp server: list, show, logs, pause, resume, stop, delete."),
    LazyCommand("cluster", "xsharp.cli.jobs_cmd:cluster_app", "The cluster behind the xsharp server."),
    LazyCommand("search", "xsharp.cli.search_cmd:app", "Hyper-parameter searches: show the trials of one."),
    LazyCommand(
        "data", "xsharp.cli.data_cmd:app", "Import your own data once (image or audio folders, tables, text), then name it in a spec: data: {dataset: NAME}."
    ),
    LazyCommand("models", "xsharp.cli.models_cmd:app", "Models registered by your finished jobs: list, show, export, delete."),
)


class XsharpCommands(LazyGroup):
    lazy = COMMANDS


app = typer.Typer(
    name="xsharp",
    help="xsharp: train deep models on an on-prem GPU cluster (or this machine) with Ray.",
    cls=XsharpCommands,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
