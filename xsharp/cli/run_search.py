"""`xsharp run` on a search spec: its trials on Ray here, a live table, the best model kept."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from xsharp.cluster import runtime
from xsharp.cluster.runtime import RuntimeConnectError
from xsharp.cluster.search import run_search, trial_specs

from .common import EXIT_FAILED, Output, err, fail, out
from .search_cmd import format_value, trials_table
from .user_errors import user_errors


def run_search_cli(raw: dict, out_dir: Path | None, address: str | None, output: Output, started: float) -> None:
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
                from xsharp.cluster.jobrunner import JobRunner  # imports ray: only once Ray is up, so that no other command (local mode above all) does

                result = run_search(raw, out_dir, on_update=lambda ts: live.update(view(ts)) if err.is_terminal else None, max_trials=None, runner=JobRunner)
        except KeyboardInterrupt:
            err.print(f"[yellow]interrupted[/]: {escape(_kept(out_dir))}; run the same command again to resume")
            raise typer.Exit(130) from None
        except RuntimeConnectError as e:
            raise fail(str(e), EXIT_FAILED) from None
    data = json.loads((out_dir / "search.json").read_text())
    if output is Output.json:
        out.print_json(json.dumps(data))
        return
    out.print(trials_table(data["trials"], data["params"], f"{name}: {len(data['trials'])} trials in {result.seconds:.1f} s", data["best"]))
    if result.best is not None:
        b = result.best
        out.print(
            f"best: trial {b.id} ({', '.join(f'{k}={format_value(v)}' for k, v in b.params.items())}): val {100 * b.metric:.2f}%, test {100 * (b.test_accuracy or 0):.2f}%"
        )
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
