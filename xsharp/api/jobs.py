"""/v1/jobs: submit, list, inspect, pause / resume / stop, delete, logs, metrics, artifacts."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, StreamingResponse

from xsharp.cluster.capacity import Resources, never_fits
from xsharp.cluster.policy import Policy, confine_data, data_fields
from xsharp.cluster.store import FINISHED, PAUSED, PREEMPTED, QUEUED, RUNNING, STOPPED, Store, TransitionError, User
from xsharp.fileguard import DataError, Forbidden
from xsharp.spec import JobSpec

from .auth import current_user, get_store, visible_job
from .datasets import pin_dataset
from .schemas import Artifact, JobDetail, JobOut, MetricRow

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="the job's id")]  # SQLite's integer range


def _out(job) -> JobOut:
    return JobOut(**job.public())


def get_policy(request: Request) -> Policy:
    return request.app.state.policy


def admitted(data: dict, priority: int, user: User, policy: Policy) -> dict:
    """The spec's data section with its paths confined and resolved and a catalog dataset pinned
    to its ``owner/name@version``, once the submission may run here: 403 for a path or a priority
    the server does not allow, 422 for a missing or unreadable file or a dataset the user may not use."""
    try:
        policy.check_priority(priority, user.admin)
        guard = policy.guard()
        confined = confine_data(data, guard)
        _readable(data, confined, guard)
        return pin_dataset(confined, user, policy)
    except Forbidden as e:
        raise HTTPException(status.HTTP_403_FORBIDDEN, [str(e)]) from None
    except DataError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [str(e)]) from None


def _readable(data: dict, confined: dict, guard) -> None:
    """DataError naming the field when the server cannot read a data file or list a data folder
    (a job that would only fail when it starts, perhaps after preempting others)."""
    for field_path, given in data_fields(data):
        real = Path(confined[field_path.split(".", 1)[1]])
        if real.is_dir():
            try:
                with os.scandir(real) as entries:
                    next(entries, None)
            except OSError as e:
                raise DataError(f"{field_path}: {given}: cannot be read ({e.strerror})") from None
        else:
            guard.open(given, field_path).close()  # every rule again, on the descriptor, and the server's read permission


def never_fits_cluster(spec: JobSpec) -> str | None:
    """Why ``spec``'s worker group can never fit the connected cluster (None: it can, or no Ray here)."""
    import ray  # heavy: loaded on a submission, not with the app

    if not ray.is_initialized():
        return None
    never = never_fits(Resources.of_job(spec.resources), Resources.of_ray(ray.cluster_resources()))
    return f"resources: {spec.resources.workers} workers need {never}" if never is not None else None


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobOut, summary="Submit a job")
def submit(spec: JobSpec, user: User = Depends(current_user), store: Store = Depends(get_store), policy: Policy = Depends(get_policy)) -> JobOut:
    """Queue a job. The body is a JobSpec (see `xsharp spec schema`). Data comes from a named
    dataset or a path under one of the server's data roots (403 otherwise); a job that can never
    fit the cluster is refused."""
    raw = spec.to_dict()
    raw["data"] = admitted(raw["data"], spec.priority, user, policy)
    reason = never_fits_cluster(spec)
    if reason:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [reason])
    need = Resources.of_job(spec.resources)
    job = store.submit(user.name, raw, spec.priority, need.cpus, need.gpus)
    return _out(job)


@router.get("", response_model=list[JobOut], summary="List jobs")
def list_jobs(
    state: list[str] | None = Query(None, description="only these states"),
    user_name: str | None = Query(None, alias="user", description="admins: only this user's jobs"),
    limit: int = Query(100, ge=1, le=10_000),
    offset: int = Query(0, ge=0, le=2**62),
    user: User = Depends(current_user),
    store: Store = Depends(get_store),
) -> list[JobOut]:
    """Your jobs (an admin sees everyone's), oldest first."""
    owner = user_name if user.admin else user.name  # an admin without a filter sees everyone's
    return [_out(j) for j in store.jobs(user=owner, states=state, limit=limit, offset=offset)]


@router.get("/{job_id}", response_model=JobDetail, summary="One job, with its spec and events")
def get_job(job_id: JobId, user: User = Depends(current_user), store: Store = Depends(get_store)) -> JobDetail:
    job = visible_job(job_id, user, store)
    return JobDetail(**job.public(), spec=job.spec, events=store.events(job_id))


def _act(job_id: JobId, user: User, store: Store, action: str) -> JobOut:
    job = visible_job(job_id, user, store)
    try:
        if action == "resume":
            store.transition(job_id, [PAUSED], QUEUED, f"resumed by {user.name}")
        elif job.state == RUNNING:
            if not store.set_request(job_id, action):
                raise TransitionError(f"job {job_id} is no longer running")
        elif action == "pause":
            store.transition(job_id, [QUEUED, PREEMPTED], PAUSED, f"paused by {user.name}")
        elif action == "stop":
            store.transition(job_id, [QUEUED, PREEMPTED, PAUSED], STOPPED, f"stopped by {user.name}", finished=time.time())
    except TransitionError as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    return _out(store.get(job_id))


@router.post("/{job_id}/pause", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED, summary="Pause a job")
def pause(job_id: JobId, user: User = Depends(current_user), store: Store = Depends(get_store)) -> JobOut:
    """A running job checkpoints at its next step and releases its workers; a queued one leaves the queue."""
    return _act(job_id, user, store, "pause")


@router.post("/{job_id}/resume", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED, summary="Resume a paused job")
def resume(job_id: JobId, user: User = Depends(current_user), store: Store = Depends(get_store)) -> JobOut:
    """Back into the queue; it goes on from its last checkpoint."""
    return _act(job_id, user, store, "resume")


@router.post("/{job_id}/stop", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED, summary="Stop a job for good")
def stop(job_id: JobId, user: User = Depends(current_user), store: Store = Depends(get_store)) -> JobOut:
    return _act(job_id, user, store, "stop")


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a finished job and its artifacts")
def delete(job_id: JobId, user: User = Depends(current_user), store: Store = Depends(get_store)) -> Response:
    visible_job(job_id, user, store)
    try:
        store.delete(job_id)
    except TransitionError as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


After = Query(
    None, ge=0, le=2**62, description="poll for what is new: the X-Next-After of the previous answer (a byte offset for logs, a row count for metrics)"
)


@router.get("/{job_id}/logs", summary="The job's log (follow=true streams until it finishes)", response_class=StreamingResponse)
async def logs(job_id: JobId, follow: bool = False, after: int | None = After, user: User = Depends(current_user), store: Store = Depends(get_store)):
    """The log as text. With ``after``: only the whole lines written since that byte offset; the
    X-Next-After header of every answer but a followed one is the offset to ask from next."""
    visible_job(job_id, user, store)
    path = store.job_dir(job_id) / "job.log"
    if not follow:
        chunk = b""
        if path.exists():
            with open(path, "rb") as f:
                f.seek(min(after or 0, os.fstat(f.fileno()).st_size))  # past the end: nothing new (a seek past 2**62 is EINVAL)
                chunk = f.read()
        if after is not None:
            chunk = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written comes next time, whole
        return Response(chunk, media_type="text/plain", headers={"X-Next-After": str((after or 0) + len(chunk))})

    async def lines():
        pos = after or 0
        while True:
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(min(pos, os.fstat(f.fileno()).st_size))
                    chunk = f.read()
                    pos += len(chunk)
                if chunk:
                    yield chunk
            job = store.get(job_id)
            if not follow or job is None or (job.state in FINISHED and path.exists() and path.stat().st_size <= pos):
                return
            await asyncio.sleep(0.5)

    return StreamingResponse(lines(), media_type="text/plain")


@router.get("/{job_id}/metrics", response_model=list[MetricRow], summary="The job's metric series")
def metrics(
    response: Response, job_id: JobId, after: int | None = After, user: User = Depends(current_user), store: Store = Depends(get_store)
) -> list[MetricRow]:
    """Every row in the order written; with ``after=N``, the rows after the first N (X-Next-After: N plus the rows sent)."""
    visible_job(job_id, user, store)
    rows = store.metrics(job_id, after or 0)
    response.headers["X-Next-After"] = str((after or 0) + len(rows))
    return [MetricRow(**row) for row in rows]


@router.get("/{job_id}/artifacts", response_model=list[Artifact], summary="The job's artifacts")
def artifacts(job_id: JobId, user: User = Depends(current_user), store: Store = Depends(get_store)) -> list[Artifact]:
    visible_job(job_id, user, store)
    root = store.job_dir(job_id) / "artifacts"
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
    return [Artifact(path=str(p.relative_to(root)), size=p.stat().st_size) for p in files]


@router.get("/{job_id}/artifacts/{path:path}", summary="Download one artifact", response_class=FileResponse)
def artifact(job_id: JobId, path: str, user: User = Depends(current_user), store: Store = Depends(get_store)):
    visible_job(job_id, user, store)
    if "\x00" in path:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "an artifact path cannot hold a NUL character")
    root = (store.job_dir(job_id) / "artifacts").resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or Path(path).is_absolute():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "artifact paths stay inside the job's artifact folder")
    if not target.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no artifact {path!r}")
    return FileResponse(target)
