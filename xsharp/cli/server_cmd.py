"""`xsharp server`: the REST endpoint and the scheduler in one process."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer
import uvicorn

from xsharp.api import create_app
from xsharp.api.datasets import ImportWorker
from xsharp.api.monitoring import check_url
from xsharp.cluster import runtime
from xsharp.cluster.policy import Policy, default_runner_memory
from xsharp.cluster.store import HOME_ENV, Store
from xsharp.cluster.usage import HALF_LIFE

from .client import config_path, move_legacy_config, read_config, write_config
from .common import err, fail


def server(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 serves the whole network."),
    port: int = typer.Option(8080, "--port", min=1, max=65535),
    address: str | None = typer.Option(None, "--address", envvar="XSHARP_RAY_ADDRESS", help="Ray cluster to run jobs on; default: an embedded local Ray."),
    home_dir: Path | None = typer.Option(None, "--home", envvar="XSHARP_HOME", help="Job store, logs, checkpoints, artifacts (default ~/.xsharp)."),
    slice_seconds: float = typer.Option(
        600.0, "--slice-seconds", min=0.1, help="Time slice: a running job yields to a waiting job of the same priority after this long."
    ),
    checkpoint_seconds: float = typer.Option(30.0, "--checkpoint-seconds", min=0.1, help="Running jobs checkpoint at least this often."),
    tick: float = typer.Option(0.5, "--tick", min=0.05, help="Seconds between scheduling decisions."),
    max_failures: int = typer.Option(3, "--max-failures", min=0, help="Restarts from checkpoint after a worker dies, before a job fails."),
    webhook: str | None = typer.Option(None, "--webhook", help="POST each finished job here as JSON."),
    exporter_url: list[str] = typer.Option(
        [], "--exporter-url", help="A node exporter (URL or HOST:PORT) whose GPUs the console's cluster page shows; repeatable."
    ),
    grafana_url: str | None = typer.Option(None, "--grafana-url", help="Grafana's address; the console links to xsharp's dashboards there."),
    data_root: list[Path] = typer.Option(
        [],
        "--data-root",
        help="A folder whose files jobs may read by data.path (resolved, symlinks included); repeatable. Without one, jobs read named datasets only.",
    ),
    max_file_bytes: int = typer.Option(Policy.max_file_bytes, "--max-file-bytes", min=1, help="The largest data file a job may open."),
    runner_memory: int | None = typer.Option(
        None,
        "--runner-memory",
        min=64 * 1024**2,
        help="Bytes of heap each job's runner process may take (RLIMIT_DATA); past it the job fails with 'out of memory', never retried. Default: half of this host's memory.",
    ),
    max_trials: int = typer.Option(Policy.max_trials, "--max-trials", min=1, help="Trials a search may have; larger searches are refused at submit (422)."),
    max_parameters: int = typer.Option(
        Policy.max_parameters, "--max-parameters", min=1, help="Parameters a job's model may have; checked once the data's shape is known."
    ),
    max_user_priority: int = typer.Option(
        Policy.max_user_priority,
        "--max-user-priority",
        min=-100,
        max=100,
        help="Highest priority a user who is not an admin may submit at (403 above it); admins go up to 100.",
    ),
    import_workers: int = typer.Option(1, "--import-workers", min=1, max=4, help="Dataset imports (POST /v1/datasets) run at once; others queue."),
    stop_grace: float = typer.Option(
        Policy.stop_grace_seconds,
        "--stop-grace",
        min=0.1,
        help="Seconds a running job has to stop after pause/stop/preempt/shutdown; then its runner is killed and it goes on from its last checkpoint.",
    ),
    usage_half_life: float = typer.Option(
        HALF_LIFE,
        "--usage-half-life",
        min=1.0,
        help="Fair share: within a priority, the user with the least recent usage goes first; usage (CPU- and GPU-seconds held) counts half after this many seconds.",
    ),
) -> None:
    """Serve the REST API (docs at /docs) and schedule jobs on Ray until Ctrl-C.

    On first start it creates the user `admin`, prints its token once and writes it to the client config (~/.config/xsharp/config, mode 0600; only its hash is kept in the store) so the CLI on this host works at once. Running jobs are checkpointed and requeued on shutdown; after a crash they resume from their last checkpoint.

    Jobs run as this server's OS user, so the server confines them: data.path must lie under a --data-root (never the store, the client config or Ray's files; regular files and folders only), each runner has a memory limit, and models, searches and priorities have caps. A path or priority the server does not allow gets 403 at submit, a spec or search over a size bound 422; a model over --max-parameters or a runner past --runner-memory fails once, never retried.
    """
    bad = [u for u in [*exporter_url, *([grafana_url] if grafana_url else [])] if not check_url(u)]
    if bad:
        raise fail(f"not a URL or HOST:PORT: {bad[0]!r}")
    bad_roots = [r for r in data_root if not r.is_dir()]
    if bad_roots:
        raise fail(f"--data-root {bad_roots[0]}: not a folder")
    if home_dir is not None:
        os.environ[HOME_ENV] = str(home_dir)
    for var in ("XSHARP_TOKEN", "XSHARP_URL"):  # the runners Ray starts inherit this environment
        os.environ.pop(var, None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = Store()
    store.usage_half_life = usage_half_life
    moved = move_legacy_config(store.root)
    if moved:
        err.print(f"moved the client config out of the job store, to {moved}")
    policy = Policy(
        data_roots=tuple(r.resolve() for r in data_root),
        denied=(store.root, config_path()),
        max_file_bytes=max_file_bytes,
        runner_memory_bytes=runner_memory or default_runner_memory(),
        max_trials=max_trials,
        max_parameters=max_parameters,
        max_user_priority=max_user_priority,
        stop_grace_seconds=stop_grace,
        datasets_root=store.root / "datasets",
    )
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    if not store.users():
        token = store.add_user("admin", admin=True)
        err.print(f"created user [bold]admin[/]; token (shown once): {token}", soft_wrap=True)
        if not read_config().get("token"):
            err.print(f"wrote {write_config(url, token)}")
    with runtime.connect(address) as info:
        from xsharp.cluster.scheduler import Scheduler  # imports ray: only once Ray is up, not for a bad option or --help

        err.print(f"Ray {'embedded' if info.embedded else 'cluster at'} {info.address}: {info.cpus:g} CPU, {info.gpus:g} GPU; store {store.root}")
        scheduler = Scheduler(
            store, slice_seconds=slice_seconds, tick=tick, checkpoint_every=checkpoint_seconds, max_failures=max_failures, webhook=webhook, policy=policy
        )
        scheduler.start()
        imports = ImportWorker(store, policy, workers=import_workers)
        failed = imports.recover()
        if failed:
            err.print(f"imports {', '.join(map(str, failed))} were cut short by the last shutdown: marked FAILED")
        try:
            err.print(f"console: {url}/ui")
            app = create_app(store, scheduler, exporter_urls=exporter_url, grafana_url=grafana_url, policy=policy, imports=imports)
            uvicorn.run(app, host=host, port=port, log_level="warning")
        finally:
            err.print("shutting down: checkpointing running jobs")
            imports.close()
            scheduler.close()
