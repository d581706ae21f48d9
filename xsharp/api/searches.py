"""/v1/searches: submit a hyper-parameter search as one job (listed and managed under /v1/jobs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, status

from xsharp.cluster.store import Store, User
from xsharp.spec import SpecError

from .auth import current_user, get_store
from .jobs import _never_fits, _out
from .schemas import JobOut

router = APIRouter(prefix="/v1/searches", tags=["jobs"])

EXAMPLE = {
    "name": "lr-x-hidden",
    "data": {"dataset": "digits"},
    "model": [{"rbm": {"hidden": {"grid": [64, 256]}}}, {"softmax": {}}],
    "train": {"learning_rate": {"range": [0.01, 0.3], "log": True}},
    "search": {"strategy": "random", "samples": 8, "max_parallel": 2},
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobOut, summary="Submit a hyper-parameter search")
def submit_search(
    body: dict[str, Any] = Body(..., description="A job spec whose numbers may be {range: [lo, hi], step}, {grid: [...]} or auto, plus a search: section.", examples=[EXAMPLE]),
    user: User = Depends(current_user),
    store: Store = Depends(get_store),
) -> JobOut:
    """Queue a search as one job: its trials run in parallel inside the job's reservation, local mode each; pausing it keeps every finished trial."""
    import ray

    from xsharp.cluster.search import slots_for, trial_specs

    try:
        _, params, trials = trial_specs(body)
    except SpecError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, e.problems) from None
    trial = trials[0][1]
    if trial.mode != "local":
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, ["mode: a search job runs local-mode trials; run data-parallel trials with `xsharp run`"])
    reason = _never_fits(trial)
    if reason:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [reason])
    total = ray.cluster_resources() if ray.is_initialized() else {"CPU": trial.resources.cpus_per_worker}
    slots = slots_for(body, total.get("CPU", 0.0), total.get("GPU", 0.0))
    res = trial.resources
    job = store.submit(user.name, body | {"name": trial.name.rsplit("-t", 1)[0]}, trial.priority, slots * res.cpus_per_worker, slots * res.gpus_per_worker)
    return _out(job)
