"""The Ray runtime: join an existing cluster, or start a lean embedded one on this machine.

    with runtime.connect() as info:       # XSHARP_RAY_ADDRESS or an embedded local Ray
        ...

An embedded Ray starts without the dashboard and with a bounded object store (the default
takes 30 % of RAM), and is shut down on exit, on Ctrl-C and on SIGTERM.
Ray >= 2.59 turns token auth on for local clusters; an address given here is joined with the
token Ray finds (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token). While joining, Ray's
own C++ log lines (a retry every second when the token is wrong) go to a log file, not to the
terminal; a refused token is then one error naming where the token comes from.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

ADDRESS_ENV = "XSHARP_RAY_ADDRESS"
DEFAULT_OBJECT_STORE = 256 * 1024**2


class RuntimeConnectError(RuntimeError):
    """Ray could not be started or reached."""


_AUTH_WORDS = ("InvalidAuthToken", "Unauthenticated", "auth token", "authentication token")


def _auth_refused(address: str, log: str | None) -> str:
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode == "token":
        why = (
            "the token sent (RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH names, else ~/.ray/auth_token) "
            "is missing or not the cluster's: give the cluster's token in one of them"
        )
    else:
        why = (
            f"RAY_AUTH_MODE is {'not set' if mode is None else repr(mode)} here, so no token was sent: set RAY_AUTH_MODE=token "
            "and give the cluster's token in RAY_AUTH_TOKEN, or in ~/.ray/auth_token (or the file RAY_AUTH_TOKEN_PATH names)"
        )
    return f"Ray at {address} refused this client's auth token: {why}" + (f" (Ray's log: {log})" if log else "")


@contextlib.contextmanager
def _stderr_to(path: str | None) -> Iterator[None]:
    """File descriptor 2 (where Ray's C++ code logs) sent to ``path`` for the block, then back."""
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        os.close(saved)
        yield
        return
    try:
        os.dup2(fd, 2)
        os.close(fd)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _read_tail(path: str | None, limit: int = 1 << 20) -> str:
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


@dataclass
class RuntimeInfo:
    address: str
    embedded: bool  # started by us (and stopped by us)
    cpus: float
    gpus: float


def _join(ray, address: str) -> None:
    """``ray.init`` on an existing cluster, Ray's C++ log lines kept out of the terminal (in the
    main thread: elsewhere fd 2 is left alone, other threads may be writing to it)."""
    log = None
    if threading.current_thread() is threading.main_thread():
        fd, log = tempfile.mkstemp(prefix="xsharp-ray-join-", suffix=".log")
        os.close(fd)
        print(f"joining Ray at {address} (Ray's messages while it connects: {log})", file=sys.stderr, flush=True)  # a join can take a while
    try:
        with _stderr_to(log):
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except KeyboardInterrupt:
        _remove_empty(log)
        raise
    except Exception as e:
        said = f"{e} {_read_tail(log)}"
        if any(w.lower() in said.lower() for w in _AUTH_WORDS):
            raise RuntimeConnectError(_auth_refused(address, log)) from None
        raise RuntimeConnectError(f"cannot reach Ray at {address}: {e}" + (f" (Ray's log: {log})" if log and os.path.getsize(log) else "")) from None
    _remove_empty(log)


def _remove_empty(log: str | None) -> None:
    if log is not None and not _read_tail(log).strip():
        with contextlib.suppress(OSError):
            os.remove(log)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int = DEFAULT_OBJECT_STORE,
) -> Iterator[RuntimeInfo]:
    import ray

    address = address or os.environ.get(ADDRESS_ENV) or None
    owned = False
    if not ray.is_initialized():
        try:
            if address:
                _join(ray, address)
            else:
                ray.init(
                    num_cpus=num_cpus,
                    num_gpus=num_gpus,
                    include_dashboard=False,
                    object_store_memory=object_store_memory,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                )
        except RuntimeConnectError:
            raise
        except Exception as e:  # ConnectionError, ValueError, RuntimeError from ray.init
            where = f"Ray at {address}" if address else "an embedded Ray"
            raise RuntimeConnectError(f"cannot start or reach {where}: {e}") from None
        owned = True
    previous = None
    if owned and threading.current_thread() is threading.main_thread():
        # ray.init replaces the SIGTERM handler; make SIGTERM unwind like Ctrl-C so we clean up.
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        resources = ray.cluster_resources()
        info = RuntimeInfo(
            address=ray.get_runtime_context().gcs_address,
            embedded=owned and not address,
            cpus=resources.get("CPU", 0.0),
            gpus=resources.get("GPU", 0.0),
        )
        yield info
    finally:
        if owned:
            ray.shutdown()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
