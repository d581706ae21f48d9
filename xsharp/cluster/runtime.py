"""The Ray runtime: join an existing cluster, or start a lean embedded one on this machine.

    with runtime.connect() as info:       # XSHARP_RAY_ADDRESS or an embedded local Ray
        ...

An embedded Ray starts without the dashboard and with a bounded object store (the default
takes 30 % of RAM), and is shut down on exit, on Ctrl-C and on SIGTERM.
Ray >= 2.59 turns token auth on for local clusters; an address given here is joined with the
token Ray finds (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from dataclasses import dataclass
from typing import Iterator

ADDRESS_ENV = "XSHARP_RAY_ADDRESS"
DEFAULT_OBJECT_STORE = 256 * 1024**2


class RuntimeConnectError(RuntimeError):
    """Ray could not be started or reached."""


@dataclass
class RuntimeInfo:
    address: str
    embedded: bool  # started by us (and stopped by us)
    cpus: float
    gpus: float


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
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=num_cpus,
                    num_gpus=num_gpus,
                    include_dashboard=False,
                    object_store_memory=object_store_memory,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                )
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
