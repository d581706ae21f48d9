"""`xsharp run` on a search spec, and `xsharp search show`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from .common import EXIT_FAILED, err, fail, out, unclipped, user_errors
from .run import Output

app = typer.Typer(help="Hyper-parameter searches: show the trials of one.", no_args_is_help=True)


def _fmt(v) -> str:
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
        t.add_row(f"{tr['id']}{mark}", *(_fmt(tr["params"][p]) for p in params), escape(state), str(tr["epochs"]), acc, test, f"{tr['seconds']:.1f}s")
    return unclipped(t)


def run_search_cli(raw: dict, out_dir: Optional[Path], address: Optional[str], output: Output, started: float) -> None:
    from dataclasses import asdict

    from xsharp.cluster import runtime
    from xsharp.cluster.search import run_search, trial_specs

    with user_errors():
        settings, params, trials = trial_specs(raw, max_trials=None)  # your own run: no server's cap
    name = trials[0][1].name.rsplit("-t", 1)[0]
    out_dir = out_dir or Path("runs") / name
    names = [p.name for p in params]
    err.print(f"[bold]{escape(name)}[/]: {settings.strategy} search over {', '.join(names) or 'nothing'}: {len(trials)} trials; results in {out_dir}")

    def view(ts) -> Table:
        return trials_table([asdict(t) for t in ts], names, f"{sum(t.state in ('SUCCEEDED', 'STOPPED', 'FAILED') for t in ts)}/{len(ts)} trials done")

    with user_errors():
        try:
            with runtime.connect(address) as info, Live(console=err, refresh_per_second=4, transient=True, auto_refresh=err.is_terminal) as live:
                err.print(f"[dim]· Ray {'embedded' if info.embedded else 'cluster at'} {info.address}: {info.cpus:g} CPU[/]")
                result = run_search(raw, out_dir, on_update=lambda ts: live.update(view(ts)) if err.is_terminal else None, max_trials=None)
        except KeyboardInterrupt:
            err.print(f"[yellow]interrupted[/]: {escape(_kept(out_dir))}; run the same command again to resume")
            raise typer.Exit(130) from None
        except Exception as e:
            from xsharp.cluster.runtime import RuntimeConnectError

            if isinstance(e, RuntimeConnectError):
                raise fail(str(e), EXIT_FAILED) from None
            raise
    data = json.loads((out_dir / "search.json").read_text())
    if output is Output.json:
        out.print_json(json.dumps(data))
        return
    out.print(trials_table(data["trials"], data["params"], f"{name}: {len(data['trials'])} trials in {result.seconds:.1f} s", data["best"]))
    if result.best is not None:
        b = result.best
        out.print(f"best: trial {b.id} ({', '.join(f'{k}={_fmt(v)}' for k, v in b.params.items())}): val {100 * b.metric:.2f}%, test {100 * (b.test_accuracy or 0):.2f}%")
        out.print(f"artifacts: {out_dir}/best/model.npz, {out_dir}/search.json, {out_dir}/search.png; trial-epochs {result.trial_epochs}")
    else:
        out.print("no trial finished")
    out.print(f"total {time.time() - started:.1f} s", style="dim")


def _kept(out_dir: Path) -> str:
    """What an interrupted search leaves: its finished trials, in out_dir/search.json."""
    try:
        trials = json.loads((out_dir / "search.json").read_text())["trials"]
    except (OSError, ValueError, KeyError, TypeError):
        trials = []
    done = sum(t.get("state") in ("SUCCEEDED", "STOPPED", "FAILED") for t in trials)
    return f"{done} finished trial{'s' if done != 1 else ''} kept in {out_dir}" if done else f"no trial had finished; results go to {out_dir}"


@app.command("show")
def show(
    target: str = typer.Argument(..., help="A search's output folder (with search.json), or a job id on the xsharp server."),
    url: Optional[str] = typer.Option(None, "--url", envvar="XSHARP_URL", help="The xsharp server, for a job id."),
    token: Optional[str] = typer.Option(None, "--token", envvar="XSHARP_TOKEN", help="Your API token, for a job id."),
    output: Output = typer.Option(Output.text, "--output", "-o"),
) -> None:
    """Print the table of a search's trials: parameters, metric, epochs run, time."""
    path = Path(target) / "search.json" if not target.endswith(".json") else Path(target)
    if path.exists():
        data = json.loads(path.read_text())
    elif target.isdigit():
        from .client import Client

        # the live table while the search runs, the finished one after
        got = Client.from_options(url, token).request("GET", f"/v1/searches/{target}")
        data = json.loads(got) if isinstance(got, str) else got
    else:
        raise fail(f"{target}: no search.json there, and not a job id")
    if output is Output.json:
        out.print_json(json.dumps(data))
        return
    state = "" if data.get("final", True) else f" (job {data['job']['state']}, so far)"
    out.print(trials_table(data["trials"], data["params"], f"{len(data['trials'])} trials, {data['settings'].get('strategy', 'grid')}{state}", data.get("best")))
