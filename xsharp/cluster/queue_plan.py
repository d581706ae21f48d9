"""Who runs next, decided over plain data: pure and cheap, tested without Ray (the
:class:`~xsharp.cluster.scheduler.Scheduler` carries the plan out each tick).

Order: higher priority first; among equals, the user with the least recent usage first (their
resource-seconds decayed with a half-life, as a dominant share of the cluster: see
:mod:`xsharp.cluster.usage`), then the one with the smaller running share (DRF), then first queued
first. A job starts only when its whole worker group fits the free resources. When the first
waiting job does not fit, jobs of lower priority are preempted for it; failing that, a running job
of the same priority whose time slice is used up yields. Nothing behind a blocked job starts (no
backfill), so big jobs are not starved by small ones.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from dataclasses import dataclass, field

from .capacity import Resources, never_fits


@dataclass
class Waiting:
    id: int
    user: str
    priority: int
    need: Resources
    queued_at: float


@dataclass
class Running:
    id: int
    user: str
    priority: int
    need: Resources
    run_started: float
    stopping: bool = False  # a stop of any kind is already under way


@dataclass
class Plan:
    start: list[int] = field(default_factory=list)
    preempt: list[int] = field(default_factory=list)  # for a higher-priority job
    yield_: list[int] = field(default_factory=list)  # time slice used up
    reject: list[tuple[int, str]] = field(default_factory=list)
    blocked: int | None = None  # the waiting job everything else queues behind


def dominant_share(need: Resources, total: Resources) -> float:
    return max(need.cpus / total.cpus if total.cpus else 0.0, need.gpus / total.gpus if total.gpus else 0.0)


def plan(
    waiting: list[Waiting],
    running: list[Running],
    free: Resources,
    total: Resources,
    now: float,
    slice_seconds: float,
    usage: dict[str, float] | None = None,
) -> Plan:
    """``usage``: each user's decayed usage in cluster-seconds (runs going on included); a user
    missing from it has none."""
    out = Plan()
    usage = usage or {}
    share: dict[str, float] = defaultdict(float)
    for r in running:
        share[r.user] += dominant_share(r.need, total)
    by_priority: dict[int, dict[str, deque]] = defaultdict(lambda: defaultdict(deque))
    for w in sorted(waiting, key=lambda w: (w.queued_at, w.id)):
        by_priority[w.priority][w.user].append(w)

    for priority in sorted(by_priority, reverse=True):
        queues = by_priority[priority]
        heap = [(usage.get(u, 0.0), share[u], q[0].queued_at, q[0].id, u) for u, q in queues.items()]
        heapq.heapify(heap)
        while heap:
            *_, user = heapq.heappop(heap)
            job = queues[user].popleft()
            if (never := never_fits(job.need, total)) is not None:
                out.reject.append((job.id, f"needs {never}"))
            elif free.fits(job.need):
                out.start.append(job.id)
                free = free - job.need
                share[user] += dominant_share(job.need, total)
            else:
                _make_room(job, running, free, now, slice_seconds, out)
                out.blocked = job.id
                return out
            if queues[user]:
                head = queues[user][0]
                heapq.heappush(heap, (usage.get(user, 0.0), share[user], head.queued_at, head.id, user))
    return out


def _make_room(job: Waiting, running: list[Running], free: Resources, now: float, slice_seconds: float, out: Plan) -> None:
    """Ask just enough running jobs to step aside for ``job``: lower priority first, then used-up slices."""
    for r in running:
        if r.stopping:
            free = free + r.need  # already on its way out
    if free.fits(job.need):
        return
    lower = sorted((r for r in running if not r.stopping and r.priority < job.priority), key=lambda r: (r.priority, -r.run_started))
    if (chosen := _enough(lower, free, job.need)) is not None:
        out.preempt.extend(chosen)
        return
    expired = sorted(
        (r for r in running if not r.stopping and r.priority == job.priority and now - r.run_started >= slice_seconds),
        key=lambda r: r.run_started,
    )
    if (chosen := _enough(expired, free, job.need)) is not None:
        out.yield_.extend(chosen)


def _enough(candidates: list[Running], free: Resources, need: Resources) -> list[int] | None:
    """The shortest prefix of ``candidates`` whose release makes ``need`` fit, or None."""
    chosen, room = [], free
    for r in candidates:
        chosen.append(r.id)
        room = room + r.need
        if room.fits(need):
            return chosen
    return None
