"""/v1/searches: submit a hyper-parameter search as one job (managed under /v1/jobs), list the
searches, and read one search's trial table, live while it runs."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, status

from xsharp.cluster.policy import Policy
from xsharp.cluster.search import slots_for, trial_specs
from xsharp.cluster.store import Job, Store, User
from xsharp.searchspec import is_search, settings_of, split_space
from xsharp.spec import SpecError

from .auth import current_user, get_store, visible_job
from .jobs import JobId, _out, admitted, get_policy, never_fits_cluster
from .schemas import JobOut, SearchOut, TrialOut

router = APIRouter(prefix="/v1/searches", tags=["jobs"])

EXAMPLE = {
    "name": "lr-x-hidden",
    "data": {"dataset": "digits"},
    "model": [{"rbm": {"hidden": {"grid": [64, 256]}}}, {"softmax": {}}],
    "train": {"learning_rate": {"range": [0.01, 0.3], "log": True}},
    "search": {"strategy": "random", "samples": 8, "max_parallel": 2},
}


def _is_search(job: Job) -> bool:
    try:
        return is_search(job.spec)
    except SpecError:  # a malformed range never reaches the store, but a spec section named search is enough
        return "search" in job.spec


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobOut, summary="Submit a hyper-parameter search")
def submit_search(
    body: dict[str, Any] = Body(
        ..., description="A job spec whose numbers may be {range: [lo, hi], step}, {grid: [...]} or auto, plus a search: section.", examples=[EXAMPLE]
    ),
    user: User = Depends(current_user),
    store: Store = Depends(get_store),
    policy: Policy = Depends(get_policy),
) -> JobOut:
    """Queue a search as one job: its trials run in parallel inside the job's reservation, local mode each; pausing it keeps every finished trial.
    A search has at most the server's `--max-trials` trials (422 past it); its data is confined as a job's (403 outside the data roots)."""
    import ray

    try:
        settings, _, trials = trial_specs(body, policy.max_trials)
    except SpecError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, e.problems) from None
    trial = trials.spec(0)
    # data sources cannot be searched, so the body's data section holds the base spec's: its
    # paths are every trial's, and its searched fields (limit, ...) pass through unchanged
    data = admitted(body["data"], trial.priority, user, policy)
    if trial.mode != "local":
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, ["mode: a search job runs local-mode trials; run data-parallel trials with `xsharp run`"])
    reason = never_fits_cluster(trial)
    if reason:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [reason])
    total = ray.cluster_resources() if ray.is_initialized() else {"CPU": trial.resources.cpus_per_worker}
    slots = slots_for(settings, trials, total.get("CPU", 0.0), total.get("GPU", 0.0))
    res = trial.resources
    job = store.submit(
        user.name, body | {"name": trial.name.rsplit("-t", 1)[0], "data": data}, trial.priority, slots * res.cpus_per_worker, slots * res.gpus_per_worker
    )
    return _out(job)


@router.get("", response_model=list[JobOut], summary="List searches")
def list_searches(
    user_name: str | None = Query(None, alias="user", description="admins: only this user's searches"),
    user: User = Depends(current_user),
    store: Store = Depends(get_store),
) -> list[JobOut]:
    """Your search jobs (an admin sees everyone's), oldest first."""
    owner = user_name if user.admin else user.name
    return [_out(j) for j in store.jobs(user=owner, limit=1_000_000) if _is_search(j)]


@router.get("/{job_id}", response_model=SearchOut, summary="One search's trial table, live while it runs")
def get_search(job_id: JobId, user: User = Depends(current_user), store: Store = Depends(get_store)) -> SearchOut:
    """Every trial's parameters, state, metric, epochs, time and validation curve. While the search
    runs the table is the one its job last reported (about twice a second); once it ends, the
    search.json artifact. Before it starts: the searched fields and no trials."""
    job = visible_job(job_id, user, store)
    if not _is_search(job):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} is not a search")
    final_file, live_file = store.job_dir(job_id) / "artifacts" / "search.json", store.job_dir(job_id) / "search.json"
    final = final_file.is_file()
    table = _read(final_file if final else live_file)
    if table is None:
        try:
            settings, names = settings_of(job.spec).model_dump(), [p.name for p in split_space(job.spec)[1]]
        except SpecError:
            settings, names = job.spec.get("search") or {}, []
        table = {"settings": settings, "params": names, "seconds": None, "best": None, "trials": []}
    trials = [TrialOut(**t) for t in table.get("trials", [])]
    best = table.get("best")
    if best is None and not final:  # the best so far: highest metric among finished trials, then the earliest
        done = [t for t in trials if t.state == "SUCCEEDED" and t.metric is not None]
        best = max(done, key=lambda t: (t.metric, -t.id)).id if done else None
    return SearchOut(
        job=_out(job),
        final=final,
        settings=table.get("settings") or {},
        params=table.get("params") or [],
        seconds=table.get("seconds"),
        best=best,
        trials=trials,
    )


def _read(path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # written atomically, so only before the first table
        return None
