"""What a job submitted through the job service may touch, and how much of the server it may take.

A service job runs as the server's OS user, so the server decides for it. These are the server's
settings (``xsharp server --data-root DIR --max-file-bytes N ...``); the API checks them at
submit time, and the job's runner applies them again when it reads its data and allocates:

- data: named datasets, datasets imported into the service's catalog (``datasets_root``, inside
  the store, read through the catalog only), or paths under the data roots (resolved, symlinks included); never the
  job store, the client config, Ray's session, /proc, /sys or /dev; regular files and folders
  only, each file at most ``max_file_bytes``;
- memory: each runner process, and each worker of its group, gets a data-segment limit
  (``RLIMIT_DATA``, :func:`xsharp.backend.cap_heap`) of ``runner_memory_bytes``, so a job that
  asks for too much fails with MemoryError instead of taking the node down;
- size: a search has at most ``max_trials`` trials, a model at most ``max_parameters``
  parameters;
- priority: a user who is not an admin submits at most at ``max_user_priority``;
- stop and pause: a runner that has not stopped ``stop_grace_seconds`` after it was asked is
  killed, and the job lands in the state that was asked for.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from xsharp.fileguard import DataError, FileGuard, Forbidden
from xsharp.spec import SpecError

GiB = 1024**3


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 * GiB


def default_runner_memory() -> int:
    """Half of this host's memory: one runner can never take the node down alone."""
    return _host_memory() // 2


def ray_private_trees() -> tuple[Path, ...]:
    """Ray's session folder and token file: a job reading them could act as the cluster."""
    trees = [Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray", Path.home() / ".ray"]
    token = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if token:
        trees.append(Path(token))
    return tuple(trees)


@dataclass(frozen=True)
class Policy:
    data_roots: tuple[Path, ...] = ()
    denied: tuple[Path, ...] = ()  # the store, the client config: filled in by the server
    max_file_bytes: int = 16 * GiB
    runner_memory_bytes: int | None = None  # None: no limit (tests of the API without a scheduler)
    max_trials: int = 10_000
    max_parameters: int = 200_000_000
    max_user_priority: int = 10
    stop_grace_seconds: float = 30.0
    datasets_root: Path | None = None  # the service's dataset catalog (<store>/datasets): jobs read it through the catalog only, never by data.path

    @classmethod
    def guarding(cls, store_root: Path) -> Policy:
        """The defaults, with the job store denied: an app or scheduler made without a server's settings."""
        return cls(denied=(store_root,), datasets_root=Path(store_root) / "datasets")

    def guard(self) -> FileGuard:
        return _guard(self)

    def check_priority(self, priority: int, admin: bool) -> None:
        if not admin and priority > self.max_user_priority:
            raise Forbidden(
                "priority", f"users who are not admins submit at priority {self.max_user_priority} or lower (xsharp server --max-user-priority), got {priority}"
            )


@functools.lru_cache(maxsize=8)
def _guard(policy: Policy) -> FileGuard:
    """One guard per policy and process: building one resolves a dozen paths, every submit asks."""
    return FileGuard(roots=tuple(policy.data_roots), denied=(*policy.denied, *ray_private_trees()), max_file_bytes=policy.max_file_bytes)


def public_reason(error: BaseException) -> str:
    """Why a service job (or trial) failed, as its user may read it. Our own errors name the field
    and the problem and are shown whole; any other exception's text could quote the data a job
    read (a converter's 'could not convert string to float: ...'), so only its type is."""
    if isinstance(error, (SpecError, DataError)):
        return str(error)
    if isinstance(error, MemoryError):
        return f"MemoryError: {error}"
    return f"{type(error).__name__} in the job's runner (the server's log has the details)"


def data_fields(data: dict) -> list[tuple[str, str]]:
    """The (field path, path) pairs of a spec's data section that name files."""
    return [(f"data.{key}", data[key]) for key in ("path", "labels") if isinstance(data.get(key), str)]


def confine_data(data: dict, guard: FileGuard) -> dict:
    """The data section with each file path checked and made absolute (resolved), or Forbidden /
    DataError naming the field. A runner checks again when it opens each file."""
    out = dict(data)
    for field_path, path in data_fields(data):
        out[field_path.split(".", 1)[1]] = str(guard.check(path, field_path))
    return out
