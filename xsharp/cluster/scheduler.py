"""Carrying out who runs next: each tick the :class:`Scheduler` supervises the running jobs on Ray,
then asks :func:`~xsharp.cluster.queue_plan.plan` (pure, over plain data) whom to start, preempt,
ask to yield or reject, and does it. A preempted or yielding job goes through checkpoint ->
release -> resume.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from xsharp.fileguard import DataError
from xsharp.files import load_files, save_files, save_table
from xsharp.parallel.group import EventPoll, bundles
from xsharp.searchspec import is_search
from xsharp.spec import SpecError, parse_spec

from . import checkpoint
from .capacity import Resources
from .jobrunner import JobRunner
from .policy import Policy, public_reason
from .queue_plan import Plan, Running, Waiting, dominant_share, plan
from .results import Done, Paused, SearchDone, SearchPaused
from .search import search_space
from .store import Job, Store

__all__ = ["Plan", "Resources", "Running", "Scheduler", "Waiting", "dominant_share", "plan"]  # the plan's names, as before the split

log = logging.getLogger(__name__)


# request on a running job -> (state it lands in once stopped, whether it goes to the back of the queue)
_LANDS = {"pause": ("PAUSED", False), "stop": ("STOPPED", False), "preempt": ("PREEMPTED", False), "yield": ("PREEMPTED", True), "shutdown": ("QUEUED", False)}


@dataclass
class _Active:
    runner: Any  # the JobRunner actor
    ref: Any  # its run's (or search's) outcome, to come
    pg: Any  # the job's placement group
    stop_sent: bool = False
    stop_sent_at: float | None = None  # when the runner was asked to stop: past the grace, it is killed
    poll: EventPoll | None = None  # of the runner's events


class Scheduler:
    """Runs in the server: each tick it supervises running jobs, then plans and starts/stops jobs."""

    def __init__(
        self,
        store: Store,
        *,
        slice_seconds: float = 600.0,
        tick: float = 0.5,
        checkpoint_every: float = 30.0,
        max_failures: int = 3,
        webhook: str | None = None,
        placement_timeout: float = 5.0,
        policy: Policy | None = None,
    ) -> None:
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
        total, free = Resources.of_ray(ray.cluster_resources()), Resources.of_ray(ray.available_resources())
        jobs = {j.id: j for j in self.store.jobs(states=["QUEUED", "PREEMPTED", "RUNNING"], limit=1_000_000)}
        waiting = [Waiting(j.id, j.user, j.priority, Resources(j.cpus, j.gpus), j.queued_at) for j in jobs.values() if j.state != "RUNNING"]
        running = [
            Running(j.id, j.user, j.priority, Resources(j.cpus, j.gpus), j.run_started or 0.0, bool(j.request) or self.active[j.id].stop_sent)
            for j in jobs.values()
            if j.state == "RUNNING" and j.id in self.active
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

    def _launch(self, job: Job) -> None:
        searching = is_search(job.spec)
        spec = search_space(job.spec, None).trials.spec(0) if searching else parse_spec(job.spec)  # capped at submit
        res = spec.resources
        if searching:  # one bundle per trial slot, as many slots as the job reserved at submission
            slots = max(1, round(job.cpus / Resources.of_job(res).cpus))
            pg = placement_group(bundles(slots, res.cpus_per_worker, res.gpus_per_worker), strategy="PACK")
        else:
            pg = placement_group(bundles(res.workers, res.cpus_per_worker, res.gpus_per_worker), strategy="PACK")
        if not pg.wait(timeout_seconds=self.placement_timeout):
            remove_placement_group(pg)  # fragmented or taken by someone else: try again next tick
            return
        local = spec.mode == "local" and not searching
        runner_class: Any = JobRunner  # a Ray actor class: .options(...).remote(...)
        runner = runner_class.options(
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
            ref = runner.run.remote(job.spec, found[0] if found else None, self.checkpoint_every, None if local else pg)
            where = f"from checkpoint {found[1].name} at {found[0].position}" if found else "from the start"
        try:
            self.store.transition(
                job.id,
                ["QUEUED", "PREEMPTED"],
                "RUNNING",
                f"started (run {job.runs + 1}) {where}",
                run_started=time.time(),
                started=job.started or time.time(),
                runs=job.runs + 1,
                request=None,
            )
        except Exception:  # stopped or paused by its user while we placed it
            ray.kill(runner)
            remove_placement_group(pg)
            return
        self.active[job.id] = _Active(runner, ref, pg)

    # ----------------------------------------------------------------- supervision
    def _supervise(self) -> None:
        for job_id, a in list(self.active.items()):
            try:
                self._supervise_one(job_id, a)
            except Exception:  # one job's trouble must not stop the supervision of the others
                log.exception("job %s: supervision failed; trying again next tick", job_id)

    def _supervise_one(self, job_id: int, a: _Active) -> None:
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
        request = self._job(job_id).request
        lands, to_back = _LANDS.get(request or "shutdown", ("QUEUED", False))
        fields: dict[str, Any] = {"request": None}
        if to_back:
            fields["queued_at"] = time.time()
        if lands == "STOPPED":
            fields["finished"] = time.time()
        self.store.transition(job_id, ["RUNNING"], lands, f"{request or 'stop'}: {how}", **fields)
        if lands == "STOPPED":
            self._notify(job_id)

    def _drain(self, job_id: int, a: _Active) -> None:
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
                    self.store.log(
                        job_id, f"{what} epoch {item['epoch']}/{item['epochs']}: loss {item['loss']:.4f}, {item['samples_per_second']:,.0f} samples/s{val}"
                    )
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
        self._drain(job_id, a)
        try:
            outcome = ray.get(a.ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, (SpecError, DataError, MemoryError)):  # deterministic: a retry would fail the same way
                self._release(job_id)
                if isinstance(cause, MemoryError):
                    limit = self.policy.runner_memory_bytes
                    reason = (
                        f"out of memory: the job needs more than its runner may take ({limit} bytes; xsharp server --runner-memory)"
                        if limit
                        else f"out of memory: {cause}"
                    )
                else:
                    reason = f"bad input: {cause}"
                self.store.transition(job_id, ["RUNNING"], "FAILED", reason, error=reason, finished=time.time(), request=None)
                return self._notify(job_id)
            log.warning("job %s failed in its runner: %s", job_id, cause or e)  # the whole text, for the admin
            return self._retry(job_id, public_reason(cause) if cause else "the job's runner failed (the server's log has the details)")
        except ray.exceptions.RayActorError as e:
            return self._retry(job_id, f"worker died: {str(e).splitlines()[0]}")
        self._release(job_id)
        self._record(job_id, outcome)

    def _record(self, job_id: int, outcome: Done | Paused | SearchDone | SearchPaused) -> None:
        """Keep what a job's run came to: artifacts and SUCCEEDED, or the state to resume from."""
        job_dir = self.store.job_dir(job_id)
        if isinstance(outcome, Paused):
            if outcome.state is not None:
                checkpoint.save(job_dir / "checkpoints", outcome.state)
            where = f" at {outcome.state.position}" if outcome.state is not None else ""
            return self._land(job_id, f"checkpointed{where} and released")
        if isinstance(outcome, SearchPaused):
            save_table(job_dir / "search.json", json.loads(outcome.table))  # finished trials, kept for the resume
            return self._land(job_id, "checkpointed and released")
        if isinstance(outcome, SearchDone):
            root, summary = job_dir / "artifacts", outcome.summary
            for name, content in outcome.files.items():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(content)
            best = f"best trial {summary['best_trial']}: val {summary['val_accuracy']:.4f}" if summary["best_trial"] is not None else "no trial finished"
            self.store.transition(job_id, ["RUNNING"], "SUCCEEDED", f"{summary['trials']} trials; {best}", result=summary, finished=time.time(), request=None)
            return self._notify(job_id)
        metrics = outcome.metrics
        outcome.save(job_dir / "artifacts")
        self.store.transition(
            job_id, ["RUNNING"], "SUCCEEDED", f"test accuracy {metrics['test_accuracy']:.4f}", result=metrics, finished=time.time(), request=None
        )
        self._notify(job_id)

    def _retry(self, job_id: int, reason: str) -> None:
        """A failure that may pass: the job goes back to the queue, up to ``max_failures`` times."""
        self._release(job_id)
        failures = self._job(job_id).failures + 1
        if failures > self.max_failures:
            self.store.transition(
                job_id,
                ["RUNNING"],
                "FAILED",
                f"{reason}; gave up after {failures} failures",
                error=reason,
                failures=failures,
                finished=time.time(),
                request=None,
            )
            return self._notify(job_id)
        self.store.transition(
            job_id, ["RUNNING"], "QUEUED", f"{reason}; retry {failures} of {self.max_failures} from the last checkpoint", failures=failures, request=None
        )

    def _release(self, job_id: int) -> None:
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

    def _job(self, job_id: int) -> Job:
        job = self.store.get(job_id)
        if job is None:  # only a finished job can be deleted, and these are running or just finished
            raise LookupError(f"job {job_id} is no longer in the store")
        return job

    def _notify(self, job_id: int) -> None:
        """POST the finished job to the webhook, if one is set; never blocks or fails the scheduler."""
        url = self.webhook
        if not url:
            return
        body = json.dumps({"event": "job.finished", "job": self._job(job_id).public()}).encode()

        def send() -> None:
            try:
                req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
                urllib.request.urlopen(req, timeout=5).close()
                self.store.event(job_id, "webhook", f"notified {url}")
            except Exception as e:
                self.store.event(job_id, "webhook", f"could not notify {url}: {e}")

        threading.Thread(target=send, daemon=True).start()
