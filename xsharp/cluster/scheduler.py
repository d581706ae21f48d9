"""Who runs next. :func:`plan` is the decision, pure and cheap; :class:`Scheduler` carries it out
on Ray each tick and supervises the running jobs.

Order: higher priority first; among equals, the user with the least recent usage first (their
resource-seconds decayed with a half-life, as a dominant share of the cluster: see
:mod:`xsharp.cluster.usage`), then the one with the smaller running share (DRF), then first queued
first. A job starts only when its
whole worker group fits the free resources. When the first waiting job does not fit, jobs of
lower priority are preempted for it; failing that, a running job of the same priority whose time
slice is used up yields. Both go through checkpoint -> release -> resume. Nothing behind a
blocked job starts (no backfill), so big jobs are not starved by small ones.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
import urllib.request
from collections import defaultdict, deque
from dataclasses import dataclass, field

from .policy import Policy, public_reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    cpus: float = 0.0
    gpus: float = 0.0

    def fits(self, need: "Resources") -> bool:
        return need.cpus <= self.cpus + 1e-9 and need.gpus <= self.gpus + 1e-9

    def __add__(self, o: "Resources") -> "Resources":
        return Resources(self.cpus + o.cpus, self.gpus + o.gpus)

    def __sub__(self, o: "Resources") -> "Resources":
        return Resources(self.cpus - o.cpus, self.gpus - o.gpus)

    def __str__(self) -> str:
        return f"{self.cpus:g} CPU" + (f" + {self.gpus:g} GPU" if self.gpus else "")


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
    waiting: list[Waiting], running: list[Running], free: Resources, total: Resources, now: float, slice_seconds: float,
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
            if not total.fits(job.need):
                out.reject.append((job.id, f"needs {job.need}; the cluster has {total} in all"))
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


# --------------------------------------------------------------------------- carrying it out

# request on a running job -> (state it lands in once stopped, whether it goes to the back of the queue)
_LANDS = {"pause": ("PAUSED", False), "stop": ("STOPPED", False), "preempt": ("PREEMPTED", False), "yield": ("PREEMPTED", True), "shutdown": ("QUEUED", False)}


@dataclass
class _Active:
    runner: object
    ref: object
    pg: object
    spec: object
    stop_sent: bool = False
    stop_sent_at: float | None = None  # when the runner was asked to stop: past the grace, it is killed
    poll: object = None  # EventPoll of the runner's events


class Scheduler:
    """Runs in the server: each tick it supervises running jobs, then plans and starts/stops jobs."""

    def __init__(self, store, *, slice_seconds: float = 600.0, tick: float = 0.5, checkpoint_every: float = 30.0,
                 max_failures: int = 3, webhook: str | None = None, placement_timeout: float = 5.0, policy: Policy | None = None):
        self.store, self.slice_seconds, self.tick_seconds = store, slice_seconds, tick
        self.policy = policy or Policy.guarding(store.root)
        self.checkpoint_every, self.max_failures, self.webhook = checkpoint_every, max_failures, webhook
        self.placement_timeout = placement_timeout
        self.active: dict[int, _Active] = {}
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_plan_seconds = 0.0

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        for job_id in self.store.recover():
            log.info("job %s returns to the queue after a restart", job_id)
        self._thread = threading.Thread(target=self._loop, name="xsharp-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                self.tick()
            except Exception:  # one bad tick must not stop scheduling
                log.exception("scheduler tick failed")
            self._closing.wait(self.tick_seconds)

    def close(self, timeout: float | None = None) -> None:
        """Checkpoint every running job and put it back in the queue, then stop. A job that has
        not checkpointed within the stop grace goes back to the queue from its last checkpoint."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for job_id, a in self.active.items():
            self.store.set_request(job_id, "shutdown")
            a.runner.request_stop.remote()
        deadline = time.time() + (self.policy.stop_grace_seconds if timeout is None else timeout)
        while self.active and time.time() < deadline:
            self._supervise()
            time.sleep(0.2)
        for job_id in list(self.active):
            self._release(job_id)
            self.store.transition(job_id, ["RUNNING"], "QUEUED", "server stopped before the job could checkpoint", request=None)

    # ----------------------------------------------------------------- one tick
    def tick(self) -> None:
        self._supervise()
        self._schedule()

    def _schedule(self) -> None:
        import ray

        total_r, free_r = ray.cluster_resources(), ray.available_resources()
        total = Resources(total_r.get("CPU", 0.0), total_r.get("GPU", 0.0))
        free = Resources(free_r.get("CPU", 0.0), free_r.get("GPU", 0.0))
        jobs = {j.id: j for j in self.store.jobs(states=["QUEUED", "PREEMPTED", "RUNNING"], limit=1_000_000)}
        waiting = [Waiting(j.id, j.user, j.priority, Resources(j.cpus, j.gpus), j.queued_at) for j in jobs.values() if j.state != "RUNNING"]
        running = [
            Running(j.id, j.user, j.priority, Resources(j.cpus, j.gpus), j.run_started or 0.0, bool(j.request) or self.active[j.id].stop_sent)
            for j in jobs.values() if j.state == "RUNNING" and j.id in self.active
        ]
        now = time.time()
        usage = {u: use.share(total.cpus, total.gpus) for u, use in self.store.usage_with_running(now).items()}
        t = time.perf_counter()
        p = plan(waiting, running, free, total, now, self.slice_seconds, usage)
        self.last_plan_seconds = time.perf_counter() - t
        for job_id, reason in p.reject:
            self.store.transition(job_id, ["QUEUED", "PREEMPTED"], "FAILED", f"rejected: {reason}", error=reason, finished=time.time())
            self._notify(job_id)
        for job_id in p.preempt:
            self.store.set_request(job_id, "preempt")
        for job_id in p.yield_:
            self.store.set_request(job_id, "yield")
        for job_id in p.start:
            try:
                self._launch(jobs[job_id])
            except Exception as e:  # one job that cannot start must not stall the queue behind it
                log.exception("cannot start job %s", job_id)
                self.store.transition(job_id, ["QUEUED", "PREEMPTED"], "FAILED", f"could not start: {e}", error=str(e), finished=time.time())
                self._notify(job_id)

    def _launch(self, job) -> None:
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from xsharp.parallel.group import bundles
        from xsharp.spec import parse_spec

        from . import checkpoint
        from .jobrunner import JobRunner
        from .search import is_search, load_files, search_space

        searching = is_search(job.spec)
        spec = search_space(job.spec, None).trials.spec(0) if searching else parse_spec(job.spec)  # capped at submit
        res = spec.resources
        if searching:  # one bundle per trial slot, as many slots as the job reserved at submission
            slots = max(1, round(job.cpus / (res.workers * res.cpus_per_worker)))
            pg = placement_group(bundles(slots, res.cpus_per_worker, res.gpus_per_worker), strategy="PACK")
        else:
            pg = placement_group(bundles(res.workers, res.cpus_per_worker, res.gpus_per_worker), strategy="PACK")
        if not pg.wait(timeout_seconds=self.placement_timeout):
            remove_placement_group(pg)  # fragmented or taken by someone else: try again next tick
            return
        local = spec.mode == "local" and not searching
        runner = JobRunner.options(
            num_cpus=res.cpus_per_worker if local else 0,
            num_gpus=res.gpus_per_worker if local else 0,
            max_concurrency=4,
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0),
        ).remote(self.policy)
        if searching:
            state_file = self.store.job_dir(job.id) / "search.json"
            previous = state_file.read_text() if state_file.exists() else None
            ref = runner.search.remote(job.spec, previous, pg, load_files(self.store.job_dir(job.id) / "search-best"))
            where = "keeping the trials finished before" if previous else "from the start"
        else:
            found = checkpoint.load_latest(self.store.job_dir(job.id) / "checkpoints")
            resume = found[0] if found else None
            ref = runner.run.remote(job.spec, resume, self.checkpoint_every, None if local else pg)
            where = f"from checkpoint {found[1].name} at {resume.position}" if resume else "from the start"
        try:
            self.store.transition(
                job.id, ["QUEUED", "PREEMPTED"], "RUNNING", f"started (run {job.runs + 1}) {where}",
                run_started=time.time(), started=job.started or time.time(), runs=job.runs + 1, request=None,
            )
        except Exception:  # stopped or paused by its user while we placed it
            ray.kill(runner)
            remove_placement_group(pg)
            return
        self.active[job.id] = _Active(runner, ref, pg, spec)

    # ----------------------------------------------------------------- supervision
    def _supervise(self) -> None:
        for job_id, a in list(self.active.items()):
            try:
                self._supervise_one(job_id, a)
            except Exception:  # one job's trouble must not stop the supervision of the others
                log.exception("job %s: supervision failed; trying again next tick", job_id)

    def _supervise_one(self, job_id: int, a: _Active) -> None:
        import ray

        job = self.store.get(job_id)
        if job is not None and job.request and not a.stop_sent:
            a.runner.request_stop.remote()
            a.stop_sent, a.stop_sent_at = True, time.time()
        self._drain(job_id, a)
        if ray.wait([a.ref], timeout=0)[0]:
            try:
                self._finish(job_id, a)
            except Exception as e:  # an outcome that cannot be read must not leave the job RUNNING for ever
                log.exception("job %s: cannot read its outcome", job_id)
                job = self.store.get(job_id)
                if job is not None and job.state == "RUNNING":
                    self._retry(job_id, f"cannot read the job's outcome ({type(e).__name__})")
        elif a.stop_sent_at is not None and time.time() - a.stop_sent_at > self.policy.stop_grace_seconds:
            self._force_stop(job_id)

    def _force_stop(self, job_id: int) -> None:
        """A runner that did not stop within the grace (blocked in a read, say) is killed; the
        job lands where its request said, and goes on from its last checkpoint if resumed."""
        self._release(job_id)
        grace = self.policy.stop_grace_seconds
        self._land(job_id, f"the runner did not stop within {grace:g} s and was killed; a resume goes on from the last checkpoint")

    def _land(self, job_id: int, how: str) -> None:
        """A running job that stopped on request lands in the state its request asks for."""
        request = self.store.get(job_id).request
        lands, to_back = _LANDS.get(request or "shutdown", ("QUEUED", False))
        fields = {"request": None}
        if to_back:
            fields["queued_at"] = time.time()
        if lands == "STOPPED":
            fields["finished"] = time.time()
        self.store.transition(job_id, ["RUNNING"], lands, f"{request or 'stop'}: {how}", **fields)
        if lands == "STOPPED":
            self._notify(job_id)

    def _drain(self, job_id: int, a: _Active) -> None:
        from xsharp.parallel.group import EventPoll

        from . import checkpoint
        from .search import save_files, save_table

        if a.poll is None:
            a.poll = EventPoll(a.runner.poll.remote)
        events = a.poll.take(timeout=10)
        if events is None:
            return
        rows, table = [], None
        for kind, item in events:
            if kind == "progress":
                rows.append(item)
                if item["epoch_end"]:
                    what = f"pretrain layer {item['layer'] + 1}" if item["phase"] == "pretrain" else "fine-tune"
                    val = f", val acc {item['val_accuracy']:.4f}" if item.get("val_accuracy") is not None else ""
                    self.store.log(job_id, f"{what} epoch {item['epoch']}/{item['epochs']}: loss {item['loss']:.4f}, {item['samples_per_second']:,.0f} samples/s{val}")
            elif kind == "checkpoint":
                path = checkpoint.save(self.store.job_dir(job_id) / "checkpoints", item)
                self.store.log(job_id, f"[checkpoint] {path.name} at {item.position}")
            elif kind == "log":
                self.store.log(job_id, str(item))
            elif kind == "pids":
                self.store.set_pids(job_id, item)
            elif kind == "trials":  # a search's trial table so far, read by GET /v1/searches/{id}
                table = item
            elif kind == "best":  # a search's best model so far: kept for a resume after a pause or a crash
                save_files(self.store.job_dir(job_id) / "search-best", item)
        if table is not None:
            save_table(self.store.job_dir(job_id) / "search.json", table)
        if rows:
            self.store.add_metrics(job_id, rows)
            self.store.update_progress(job_id, rows[-1])

    def _finish(self, job_id: int, a: _Active) -> None:
        import ray

        from xsharp.algos import Model
        from xsharp.algos.datasets import DataError
        from xsharp.spec import SpecError

        from . import checkpoint
        from .runner import write_artifacts
        from .search import save_table

        self._drain(job_id, a)
        try:
            outcome = ray.get(a.ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, (SpecError, DataError, MemoryError)):  # deterministic: a retry would fail the same way
                self._release(job_id)
                if isinstance(cause, MemoryError):
                    limit = self.policy.runner_memory_bytes
                    reason = f"out of memory: the job needs more than its runner may take ({limit} bytes; xsharp server --runner-memory)" if limit else f"out of memory: {cause}"
                else:
                    reason = f"bad input: {cause}"
                self.store.transition(job_id, ["RUNNING"], "FAILED", reason, error=reason, finished=time.time(), request=None)
                return self._notify(job_id)
            log.warning("job %s failed in its runner: %s", job_id, cause or e)  # the whole text, for the admin
            return self._retry(job_id, public_reason(cause) if cause else "the job's runner failed (the server's log has the details)")
        except ray.exceptions.RayActorError as e:
            return self._retry(job_id, f"worker died: {str(e).splitlines()[0]}")
        self._release(job_id)
        if outcome[0] == "search_done":
            _, files, summary = outcome
            root = self.store.job_dir(job_id) / "artifacts"
            for name, content in files.items():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(content)
            best = f"best trial {summary['best_trial']}: val {summary['val_accuracy']:.4f}" if summary["best_trial"] is not None else "no trial finished"
            self.store.transition(job_id, ["RUNNING"], "SUCCEEDED", f"{summary['trials']} trials; {best}", result=summary, finished=time.time(), request=None)
            return self._notify(job_id)
        if outcome[0] in ("stopped", "search_stopped"):
            state = outcome[1]
            if outcome[0] == "search_stopped":
                save_table(self.store.job_dir(job_id) / "search.json", json.loads(state))  # finished trials, kept for the resume
                state = None
            elif state is not None:
                checkpoint.save(self.store.job_dir(job_id) / "checkpoints", state)
            where = f" at {state.position}" if state is not None else ""
            return self._land(job_id, f"checkpointed{where} and released")
        _, flat, meta, metrics = outcome
        spec = a.spec
        model = Model(spec.layers, tuple(meta["in_shape"]), meta["n_classes"], seed=spec.seed, classes=meta["classes"])
        model.set_flat(flat)
        model.pipeline = meta.get("pipeline")
        write_artifacts(self.store.job_dir(job_id) / "artifacts", spec, model, metrics)
        self.store.transition(
            job_id, ["RUNNING"], "SUCCEEDED", f"test accuracy {metrics['test_accuracy']:.4f}", result=metrics, finished=time.time(), request=None
        )
        self._notify(job_id)

    def _retry(self, job_id: int, reason: str) -> None:
        """A failure that may pass: the job goes back to the queue, up to ``max_failures`` times."""
        self._release(job_id)
        job = self.store.get(job_id)
        failures = job.failures + 1
        if failures > self.max_failures:
            self.store.transition(job_id, ["RUNNING"], "FAILED", f"{reason}; gave up after {failures} failures", error=reason, failures=failures, finished=time.time(), request=None)
            return self._notify(job_id)
        self.store.transition(job_id, ["RUNNING"], "QUEUED", f"{reason}; retry {failures} of {self.max_failures} from the last checkpoint", failures=failures, request=None)

    def _release(self, job_id: int) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        a = self.active.pop(job_id, None)
        if a is None:
            return
        try:
            ray.kill(a.runner, no_restart=True)
        except Exception:
            pass
        try:
            remove_placement_group(a.pg)
        except Exception:
            pass

    def _notify(self, job_id: int) -> None:
        """POST the finished job to the webhook, if one is set; never blocks or fails the scheduler."""
        if not self.webhook:
            return
        job = self.store.get(job_id)
        body = json.dumps({"event": "job.finished", "job": job.public()}).encode()

        def send():
            try:
                req = urllib.request.Request(self.webhook, data=body, headers={"Content-Type": "application/json"}, method="POST")
                urllib.request.urlopen(req, timeout=5).close()
                self.store.event(job_id, "webhook", f"notified {self.webhook}")
            except Exception as e:
                self.store.event(job_id, "webhook", f"could not notify {self.webhook}: {e}")

        threading.Thread(target=send, daemon=True).start()
