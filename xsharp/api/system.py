"""/healthz and /metrics: no token needed, nothing private."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from xsharp.appliance.exporter import job_state_families, queue_wait_families
from xsharp.cluster.store import Store

from .auth import get_store

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Liveness: the store answers and Ray is connected")
def healthz(store: Store = Depends(get_store)) -> dict:
    import ray

    store.jobs_by_state()
    return {"status": "ok", "ray": ray.is_initialized()}


class StoreCollector:
    """Job and queue metrics read from the store on each scrape, in the exporter's families."""

    def __init__(self, store: Store, scheduler=None):
        self.store, self.scheduler = store, scheduler

    def collect(self):
        yield from job_state_families(self.store.jobs_by_state())
        yield from queue_wait_families(self.store.queue_wait_seconds())
        if self.scheduler is not None:
            yield GaugeMetricFamily("xsharp_scheduler_plan_seconds", "Time the last scheduling decision took", value=self.scheduler.last_plan_seconds)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    registry = CollectorRegistry()
    registry.register(StoreCollector(request.app.state.store, request.app.state.scheduler))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
