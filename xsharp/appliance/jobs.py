"""What the exporter reads about jobs (``JobView``) and which job holds which GPU.

The job store implements ``JobView``; the exporter only reads it. A GPU belongs to a job when
one of the GPU's compute processes is one of the job's processes or a descendant of one (a
worker may start helpers), or when the job's placement names the GPU.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

MAX_PARENT_HOPS = 16


@runtime_checkable
class JobView(Protocol):
    """The read side of the job store, as the exporter on one node sees it.

    ``running_jobs()``: one dict per RUNNING job that has processes or GPUs on *this* node:
      - ``job_id`` (str or int) and ``user`` (str): required;
      - ``pids`` (list[int]): the job's process ids on this node (Ray worker actors), may be empty;
      - ``gpus`` (list[int | str]): GPUs placed for the job on this node, NVML indices or UUIDs, may be empty;
      - optional: ``samples_per_second`` and ``loss`` (float or None: latest reported),
        ``step`` (int), ``failures`` (int: failed runs of this job so far, 0 if none).
    ``jobs_by_state()``: job counts by state for the whole cluster (QUEUED, RUNNING, ...).
    ``queue_wait_seconds()``: for each job now waiting to be scheduled, seconds since it was queued.
    """

    def running_jobs(self) -> list[dict]: ...

    def jobs_by_state(self) -> dict[str, int]: ...

    def queue_wait_seconds(self) -> list[float]: ...


def load_job_view(target: str) -> JobView:
    """Import ``module:callable`` and call it to get a JobView (the `--jobs` option of `xsharp exporter`)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--jobs {target!r}: expected module:callable, e.g. mypkg.jobs:job_view")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"--jobs {target!r}: cannot import {module_name}: {e}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"--jobs {target!r}: {module_name} has no callable {attr}")
    view = factory()
    if not isinstance(view, JobView):
        raise ValueError(f"--jobs {target!r}: {attr}() returned {type(view).__name__}, which lacks running_jobs/jobs_by_state/queue_wait_seconds")
    return view


def parent_pid(pid: int, proc: str | Path = "/proc") -> int | None:
    try:
        stat = (Path(proc) / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: the fields start after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def attribute(
    jobs: Iterable[dict],
    gpu_pids: dict[int, list[int]],
    gpu_uuids: dict[int, str],
    proc: str | Path = "/proc",
) -> dict[int, list[dict]]:
    """GPU index -> the jobs holding it (by process, ancestor process, or placement)."""
    jobs = list(jobs)
    owner: dict[int, dict] = {}
    for job in jobs:
        for pid in job.get("pids") or ():
            owner[int(pid)] = job
    by_uuid = {uuid: index for index, uuid in gpu_uuids.items() if uuid}
    held: dict[int, list[dict]] = {}

    def hold(index: int, job: dict) -> None:
        lst = held.setdefault(index, [])
        if all(j is not job for j in lst):
            lst.append(job)

    ancestors: dict[int, dict | None] = {}  # this scrape's memo: pid -> owning job or None

    def job_of(pid: int) -> dict | None:
        chain = []
        current: int | None = pid
        found = None
        for _ in range(MAX_PARENT_HOPS):
            if current is None or current <= 1:
                break
            if current in owner:
                found = owner[current]
                break
            if current in ancestors:
                found = ancestors[current]
                break
            chain.append(current)
            current = parent_pid(current, proc)
        for p in chain:
            ancestors[p] = found
        return found

    for index, pids in gpu_pids.items():
        for pid in pids:
            job = job_of(pid)
            if job is not None:
                hold(index, job)
    for job in jobs:
        for g in job.get("gpus") or ():
            index = _gpu_index(g, by_uuid)
            if index is not None and index in gpu_uuids:
                hold(index, job)
    return held


def _gpu_index(g: Any, by_uuid: dict[str, int]) -> int | None:
    if isinstance(g, bool):
        return None
    if isinstance(g, int):
        return g
    s = str(g).strip()
    if s.isdigit():
        return int(s)
    return by_uuid.get(s)
