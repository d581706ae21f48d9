"""/healthz and /metrics: no token needed, nothing private."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from xsharp.cluster.store import Store

from .auth import get_store

router = APIRouter(tags=["system"])

WAIT_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


@router.get("/healthz", summary="Liveness: the store answers and Ray is connected")
def healthz(store: Store = Depends(get_store)) -> dict:
    import ray

    store.jobs_by_state()
    return {"status": "ok", "ray": ray.is_initialized()}


class StoreCollector:
    """Job and queue metrics read from the store on each scrape."""

    def __init__(self, store: Store, scheduler=None):
        self.store, self.scheduler = store, scheduler

    def collect(self):
        jobs = GaugeMetricFamily("xsharp_jobs", "Jobs by state", labels=["state"])
        for state, n in self.store.jobs_by_state().items():
            jobs.add_metric([state], n)
        yield jobs
        waits = sorted(self.store.queue_wait_seconds())
        buckets, i = [], 0
        for b in WAIT_BUCKETS:
            while i < len(waits) and waits[i] <= b:
                i += 1
            buckets.append((str(b), i))
        buckets.append(("+Inf", len(waits)))
        yield HistogramMetricFamily("xsharp_queue_wait_seconds", "How long waiting jobs have waited", buckets=buckets, sum_value=sum(waits))
        if self.scheduler is not None:
            yield GaugeMetricFamily("xsharp_scheduler_plan_seconds", "Time the last scheduling decision took", value=self.scheduler.last_plan_seconds)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    registry = CollectorRegistry()
    registry.register(StoreCollector(request.app.state.store, request.app.state.scheduler))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
