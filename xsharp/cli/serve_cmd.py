"""`xsharp serve MODEL --replicas N`: a registered model on the Ray cluster, behind Ray Serve."""

from __future__ import annotations

import importlib
import signal
import time
from pathlib import Path

import typer

from xsharp.cluster import runtime
from xsharp.cluster.store import Store
from xsharp.serving.deploy import deploy, undeploy

from .common import EXIT_FAILED, err, fail, out


def _resolve(store, model: str, user: str | None):
    """The registered model ``model`` names: an id, or NAME / NAME@vN (of ``user``, or of the one
    user who has such a name)."""
    if model.isdigit():
        found = store.model(int(model))
        if found is None:
            raise fail(f"model {model}: no such model in {store.root}")
        return found
    name, _, version = model.partition("@")
    version = version.removeprefix("v")
    if version and not version.isdigit():
        raise fail(f"model {model!r}: a version is @N or @vN")
    matches = [m for m in store.models(user=user, name=name) if not version or m.version == int(version)]
    owners = sorted({m.user for m in matches})
    if not matches:
        raise fail(f"model {model!r}: no such model" + (f" of user {user!r}" if user else "") + " (see `xsharp models list`)")
    if len(owners) > 1:
        raise fail(f"model {model!r}: users {', '.join(owners)} each have one; say whose with --user")
    return max(matches, key=lambda m: m.version)


def serve(
    model: str = typer.Argument(..., metavar="MODEL", help="A registered model: its id, or NAME (its latest version) or NAME@vN."),
    replicas: int = typer.Option(1, "--replicas", min=1, max=64, help="Copies of the model on the cluster; requests are spread over them."),
    cpus_per_replica: float = typer.Option(0.5, "--cpus-per-replica", min=0.0, max=256.0, help="CPUs Ray reserves for each replica."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address Ray Serve's HTTP proxy listens on; 0.0.0.0 serves the whole network."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port of Ray Serve's HTTP proxy (one for every served model)."),
    user: str | None = typer.Option(None, "--user", help="Whose model NAME is, where several users have one of that name."),
    address: str | None = typer.Option(
        None, "--address", envvar="XSHARP_RAY_ADDRESS", help="Ray cluster to deploy on; default: an embedded local Ray, which lives as long as this command."
    ),
    home_dir: Path | None = typer.Option(
        None, "--home", envvar="XSHARP_HOME", help="The job store holding the model registry and the users' tokens (default ~/.xsharp)."
    ),
    detach: bool = typer.Option(False, "--detach", help="Deploy, print the address and exit, leaving the model served on the cluster (needs --address)."),
    stop: bool = typer.Option(False, "--stop", help="Remove MODEL's deployment from the cluster and exit."),
) -> None:
    """Serve a registered model on the Ray cluster with Ray Serve until Ctrl-C.

    Run it on the server host, as `xsharp server` runs: it reads the job store's model registry
    and users. Each replica answers `POST /v1/models/ID/predict` and `GET /v1/models/ID/input` at
    Serve's address exactly as the job service does (JSON rows or an uploaded image, WAV or text;
    the top k classes), with concurrent requests micro-batched, behind the same bearer tokens:
    the model's owner and admins get answers, anyone else a 404.

    Example: xsharp serve 3 --replicas 2 --address auto; then
    curl -H "Authorization: Bearer $TOKEN" -F file=@seven.png http://127.0.0.1:8000/v1/models/3/predict
    """
    try:
        importlib.import_module("ray.serve")  # importable only with the serve extra's dependencies
    except ImportError:
        raise fail("xsharp serve needs Ray Serve: pip install 'xsharp[serve]' (on every node of the cluster)") from None
    if detach and stop:
        raise fail("--detach and --stop: choose one")
    if detach and not address:
        raise fail("--detach leaves the model on a Ray cluster, and an embedded Ray ends with this command: give --address")
    store = Store(home_dir)
    registered = _resolve(store, model, user)
    if not (store.job_dir(registered.job_id) / registered.path).is_file():
        raise fail(f"model {registered.id}: its file is gone (job {registered.job_id} was deleted)")
    try:
        with runtime.connect(address) as info:
            if stop:
                gone = undeploy(registered.id)
                out.print(f"model {registered.id}: " + ("deployment removed" if gone else "was not deployed"), markup=False)
                return
            err.print(
                f"deploying model {registered.id} ({registered.name} v{registered.version}, {registered.user}'s) with {replicas} replica(s) on Ray at {info.address} ...",
                markup=False,
            )
            started = time.monotonic()
            d = deploy(store.root, registered.id, replicas, host, port, cpus_per_replica)
            out.print(f"serving model {d.model_id} at {d.url}/predict ({d.replicas} replica(s), ready in {time.monotonic() - started:.1f} s)", markup=False)
            if detach:
                out.print(f"left running on the cluster; remove it with: xsharp serve {registered.id} --stop --address {info.address}", markup=False)
                return
            previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C does not cut the clean-up short
                    signal.signal(sig, signal.SIG_IGN)
                undeploy(registered.id)
                err.print(f"model {registered.id}: deployment removed", markup=False)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    except runtime.RuntimeConnectError as e:
        raise fail(str(e), EXIT_FAILED) from None


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
