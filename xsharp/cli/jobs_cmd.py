"""`xsharp jobs ...` and `xsharp cluster status`: clients of the REST endpoint (`xsharp cluster up`: :mod:`.cluster_up_cmd`)."""

from __future__ import annotations

import json
import sys
import time

import typer
from rich.markup import escape
from rich.table import Table

from .client import Client, TokenOption, UrlOption
from .cluster_up_cmd import cluster_up
from .common import Output, out, unclipped

jobs_app = typer.Typer(help="Your jobs on the xsharp server: list, show, logs, pause, resume, stop, delete.", no_args_is_help=True)
cluster_app = typer.Typer(help="The cluster behind the xsharp server.", no_args_is_help=True)


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    s = time.time() - ts
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.1f}h ago"


def _progress(job: dict) -> str:
    p = job.get("progress")
    result = job.get("result") or {}
    if result.get("test_accuracy") is not None:
        return f"test acc {100 * result['test_accuracy']:.2f}%"
    if not p:
        return ""
    if p["phase"] == "search":
        best = f", best val {100 * p['val_accuracy']:.2f}%" if p.get("val_accuracy") is not None else ""
        return f"{p['step']}/{p['steps']} trials{best}"
    what = f"pretrain L{p['layer'] + 1}" if p["phase"] == "pretrain" else "fine-tune"
    return f"{what} {p['epoch']}/{p['epochs']} ({100 * p['step'] / max(p['steps'], 1):.0f}%) loss {p['loss']:.3f}"


def _table(jobs: list[dict], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("id", "name", "user", "state", "prio", "mode", "submitted", "progress"):
        t.add_column(col)
    for j in jobs:
        state = j["state"] + (f" ({j['request']}ing)" if j.get("request") else "")
        t.add_row(str(j["id"]), escape(j["name"]), escape(j["user"]), state, str(j["priority"]), j["mode"], _ago(j["submitted"]), _progress(j))
    return unclipped(t)


@jobs_app.command("list")
def jobs_list(
    state: list[str] | None = typer.Option(None, "--state", "-s", help="Only these states (repeatable)."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    output: Output = typer.Option(Output.text, "--output", "-o"),
) -> None:
    """List your jobs (an admin sees everyone's)."""
    params = {"state": [s.upper() for s in state]} if state else {}
    jobs = Client.from_options(url, token).request("GET", "/v1/jobs", params=params)
    if output is Output.json:
        out.print_json(json.dumps(jobs))
    else:
        out.print(_table(jobs, f"{len(jobs)} job(s)"))


@jobs_app.command("show")
def jobs_show(job_id: int, url: str | None = UrlOption, token: str | None = TokenOption, output: Output = typer.Option(Output.text, "--output", "-o")) -> None:
    """A job's state, progress, result and events."""
    job = Client.from_options(url, token).request("GET", f"/v1/jobs/{job_id}")
    if output is Output.json:
        out.print_json(json.dumps(job))
        return
    out.print(_table([job], f"job {job_id}"))
    if job.get("error"):
        out.print(f"error: {escape(job['error'])}")
    for e in job["events"]:
        out.print(f"  {time.strftime('%H:%M:%S', time.localtime(e['ts']))} {e['kind']:<10} {escape(e['message'])}")


@jobs_app.command("logs")
def jobs_logs(
    job_id: int,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job finishes."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
) -> None:
    """Print a job's log."""
    for chunk in Client.from_options(url, token).stream(f"/v1/jobs/{job_id}/logs", follow=str(follow).lower()):
        sys.stdout.write(chunk)
        sys.stdout.flush()


def _action(name: str, help_text: str):
    def command(
        job_id: int, url: str | None = UrlOption, token: str | None = TokenOption, output: Output = typer.Option(Output.text, "--output", "-o")
    ) -> None:
        job = Client.from_options(url, token).request("POST", f"/v1/jobs/{job_id}/{name}")
        if output is Output.json:
            out.print_json(json.dumps(job))
        else:
            pending = f", {job['request']} requested" if job.get("request") else ""
            out.print(f"job {job_id}: {job['state']}{pending}")

    command.__doc__ = help_text
    jobs_app.command(name)(command)


_action("pause", "Pause a job: a running one checkpoints and releases its workers.")
_action("resume", "Put a paused job back in the queue; it goes on from its checkpoint.")
_action("stop", "Stop a job for good (a running one checkpoints first).")


@jobs_app.command("delete")
def jobs_delete(job_id: int, url: str | None = UrlOption, token: str | None = TokenOption) -> None:
    """Delete a finished job with its logs, checkpoints and artifacts."""
    Client.from_options(url, token).request("DELETE", f"/v1/jobs/{job_id}")
    out.print(f"job {job_id} deleted")


@cluster_app.command("status")
def cluster_status(url: str | None = UrlOption, token: str | None = TokenOption, output: Output = typer.Option(Output.text, "--output", "-o")) -> None:
    """Nodes, free and total resources, jobs by state, the queue, and each user's recent usage (fair share)."""
    c = Client.from_options(url, token).request("GET", "/v1/cluster")
    if output is Output.json:
        out.print_json(json.dumps(c))
        return
    t = Table(title=f"{len(c['nodes'])} node(s)", title_justify="left")
    for col in ("node", "address", "CPU", "GPU"):
        t.add_column(col)
    for n in c["nodes"]:  # a user who is not an admin gets nodes without ids or addresses
        t.add_row((n.get("node_id") or "(admins only)")[:12], str(n.get("address") or ""), f"{n['cpus']:g}", f"{n['gpus']:g}")
    out.print(unclipped(t))
    tot, free = c["total"], c["free"]
    out.print(f"free: {free.get('CPU', 0):g} of {tot.get('CPU', 0):g} CPU, {free.get('GPU', 0):g} of {tot.get('GPU', 0):g} GPU")
    out.print("jobs: " + ", ".join(f"{k.lower()} {v}" for k, v in c["jobs_by_state"].items() if v) or "jobs: none")
    if c["queue"]:
        out.print(_table(c["queue"], "queue (next first)"))
    if c.get("usage"):
        u = Table(
            title=f"recent usage, least first: the order users are served within a priority (half-life {c['usage_half_life_hours']:g} h)", title_justify="left"
        )
        for col in ("user", "CPU-hours", "GPU-hours", "cluster share (hours)"):
            u.add_column(col, justify="left" if col == "user" else "right")
        for row in c["usage"]:
            u.add_row(escape(row["user"]), f"{row['cpu_hours']:.3g}", f"{row['gpu_hours']:.3g}", f"{row['share']:.3g}")
        out.print(unclipped(u))


cluster_app.command("up")(cluster_up)
