"""/v1/cluster: nodes, GPUs, total and free resources, and the queue."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends

from xsharp.cluster.store import WAITING, Store, User

from .auth import current_user, get_store
from .schemas import ClusterOut, JobOut, UserUsage

router = APIRouter(prefix="/v1", tags=["cluster"])


@router.get("/cluster", response_model=ClusterOut, summary="Nodes, resources and the queue")
def cluster(user: User = Depends(current_user), store: Store = Depends(get_store)) -> ClusterOut:
    """Resources, job counts by state, and the queue. A user who is not an admin sees only their
    own waiting jobs, and nodes without their ids and addresses."""
    import ray

    nodes, total, free = [], {}, {}
    if ray.is_initialized():
        for n in ray.nodes():
            if n.get("Alive"):
                res = n.get("Resources", {})
                node = {"cpus": res.get("CPU", 0.0), "gpus": res.get("GPU", 0.0)}
                if user.admin:
                    node |= {"node_id": n["NodeID"], "address": n.get("NodeManagerAddress")}
                nodes.append(node)
        total = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")}
        free = {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU", "memory")}
    queue = store.jobs(user=None if user.admin else user.name, states=WAITING, limit=1_000_000)
    queue.sort(key=lambda j: (-j.priority, j.queued_at, j.id))
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    usage = [
        UserUsage(user=u, cpu_hours=use.cpu_seconds / 3600, gpu_hours=use.gpu_seconds / 3600, share=use.share(cpus, gpus) / 3600)
        for u, use in store.usage_with_running(time.time()).items()
        if user.admin or u == user.name
    ]
    usage.sort(key=lambda u: (u.share, u.user))
    return ClusterOut(
        nodes=nodes,
        total=total,
        free=free,
        jobs_by_state=store.jobs_by_state(),
        queue=[JobOut(**j.public()) for j in queue[:100]],
        usage=usage,
        usage_half_life_hours=store.usage_half_life / 3600,
    )
