"""Running a search: its trials in parallel slots on Ray, resumable from search.json.

Trials run in parallel *slots*: each slot reserves one trial's resources (a gang placement group)
and keeps one runner actor that trains trial after trial, in any execution mode. A failed trial is
recorded, not fatal. Results go to ``search.json`` after every trial, so a rerun with the same
output folder never reruns a finished trial.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from xsharp.files import save_table
from xsharp.searchspec import Param, SearchSettings
from xsharp.spec import JobSpec

from ..policy import Policy, public_reason
from ..results import Done, Paused
from .asha import ASHA
from .plot import plot
from .result import SearchResult, Trial, snapshot
from .space import slots_for, trial_specs

POLL_SECONDS = 0.25  # a running trial's events reach the search at least this often (rungs and ends at once)


class SearchStopped(Exception):
    """The search was asked to stop; finished trials are kept in search.json, the rest rerun."""


class _Slot:
    """Room for one trial at a time: its own reservation, or bundle ``bundle`` of the search
    job's reservation ``pg`` (local-mode trials), and one runner (an actor of ``runner_class``,
    the ``@ray.remote`` JobRunner) that trains trial after trial."""

    def __init__(self, runner_class: Any, spec: JobSpec, pg=None, bundle: int = 0, policy: Policy | None = None):
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from xsharp.parallel.group import bundles  # imports ray: kept here so that importing a search never does

        res = spec.resources
        self.runner_class, self.spec, self.bundle, self.policy = runner_class, spec, bundle, policy
        self.local = spec.mode == "local"
        self.owns_pg = pg is None
        if pg is None:
            pg = placement_group(bundles(res.workers, res.cpus_per_worker, res.gpus_per_worker), strategy="PACK")
            ray.get(pg.ready())
            bundle = self.bundle = 0
        self.pg = pg
        self.runner = runner_class.options(
            num_cpus=res.cpus_per_worker if self.local else 0,
            num_gpus=res.gpus_per_worker if self.local else 0,
            max_concurrency=4,
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=bundle),
        ).remote(policy)
        self.trial: Trial | None = None
        self.fold: int | None = None
        self.run_id = 0  # one per trial run on this slot's runner
        self.keep: dict[int, bool] = {}  # rung epoch -> asha's verdict for the running trial
        self.ref = None
        self.poll = None  # the outstanding poll of the runner's events
        self.started = 0.0
        self.stop_sent = False

    def close(self) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        ray.kill(self.runner, no_restart=True)
        if self.owns_pg:
            remove_placement_group(self.pg)


def run_search(
    raw: dict,
    out_dir: Path | None = None,
    on_update: Callable[[list[Trial]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    placement_group=None,
    on_best: Callable[[Path], None] | None = None,
    max_trials: int | None = Policy.max_trials,
    policy: Policy | None = None,
    *,
    runner: Any,
) -> SearchResult:
    """Run every trial of the search ``raw`` on the connected Ray cluster; with
    ``placement_group`` (a search job's reservation, one bundle per slot) inside it.

    With ``out_dir``, a rerun keeps the finished trials of ``out_dir/search.json`` and the best
    model so far in ``out_dir/best``; ``on_best(out_dir / "best")`` follows each new best model,
    so a caller can keep it safe before the search ends. Each trial's JobSpec is built when it
    starts; ``max_trials`` as in :func:`search_space`. ``policy``: a search job of the service,
    whose trials read, allocate and size their models under the server's rules. ``runner``: the
    ``@ray.remote`` actor class that trains trials (``xsharp.cluster.jobrunner.JobRunner``), passed
    in so that the search never imports the runner that runs searches."""
    import ray

    settings, params, specs = trial_specs(raw, max_trials)
    trials = [Trial(i, specs.values(i)) for i in range(len(specs))]
    done_file = out_dir / "search.json" if out_dir else None
    if done_file is not None and done_file.exists():  # a rerun: finished trials are never rerun
        previous = {json.dumps(t["params"], sort_keys=True): t for t in json.loads(done_file.read_text())["trials"]}
        for t in trials:
            old = previous.get(json.dumps(t.params, sort_keys=True))
            if old and old["state"] in ("SUCCEEDED", "STOPPED", "FAILED"):
                trials[t.id] = Trial(**(old | {"id": t.id}))
    first = specs.spec(0)
    asha = ASHA(first.train.epochs, settings.reduction_factor, settings.min_epochs) if settings.strategy == "asha" else None
    if asha is not None:
        for t in trials:  # rung results of finished trials still count
            for epoch, metric in enumerate(t.curve, 1):
                if epoch in asha.rungs:
                    asha.rungs[epoch].append(metric)
    if placement_group is not None:
        n_slots = len(placement_group.bundle_specs)
    else:
        total = ray.cluster_resources()
        n_slots = slots_for(settings, specs, total.get("CPU", 0.0), total.get("GPU", 0.0))
    rank = lambda t: (t.metric, -t.id)  # noqa: E731  the best trial: highest metric, then the earliest
    best_key = max((rank(t) for t in trials if t.state == "SUCCEEDED" and t.metric is not None), default=(-1.0, 0))
    kept = out_dir / "best" / "metrics.json" if out_dir is not None else None
    if kept is not None and kept.exists():  # a best model from before: kept only if the table backs it
        top = max((t for t in trials if t.state == "SUCCEEDED" and t.metric is not None), key=rank, default=None)
        if top is None or json.loads(kept.read_text()).get("trial") != top.id:  # saved just before a crash, its trial not yet in the table
            shutil.rmtree(kept.parent)
    t0 = time.time()
    k = settings.folds
    for t in trials:
        if t.state != "SUCCEEDED":
            t.fold_metrics = []  # a trial cut short re-runs all of its folds
    pending = [(t, f) for t in trials if t.state == "PENDING" for f in (range(k) if k else [None])]
    slots = [_Slot(runner, first, placement_group, i, policy) for i in range(min(n_slots, len(pending)))]
    try:
        while pending or any(s.trial for s in slots):
            for s in slots:
                while s.trial is None and pending:
                    t, fold = pending.pop(0)
                    if t.state == "FAILED":
                        continue  # another fold of it failed
                    spec = specs.spec(t.id)
                    s.trial, s.fold, s.started, s.stop_sent = t, fold, time.time(), False
                    gates = sorted(asha.rungs) if asha is not None else ()
                    s.run_id += 1
                    s.ref = s.runner.run.remote(spec.to_dict(), None, 3600.0, None if s.local else s.pg, gates, (fold, k) if k else None, s.run_id)
                    s.keep = {}
                    t.state = "RUNNING"
            for s in slots:
                if s.trial is not None and s.poll is None:  # returns early at a rung or the trial's end
                    s.poll = s.runner.poll.remote(POLL_SECONDS, s.run_id)
            busy = [s for s in slots if s.trial]
            ready = set(ray.wait([s.ref for s in busy] + [s.poll for s in busy], num_returns=1, timeout=POLL_SECONDS)[0])
            for s in slots:
                if s.trial is None:
                    continue
                t = s.trial
                if s.fold is None:
                    t.seconds = time.time() - s.started  # live tables show a running trial's time so far
                events = []
                if s.poll in ready or s.ref in ready:
                    try:
                        events = ray.get(s.poll)
                        if s.ref in ready:  # whatever the trial said after that poll
                            events += ray.get(s.runner.poll.remote())
                    except ray.exceptions.RayActorError:
                        pass  # the runner died: its trial's ref says so below
                    s.poll = None
                for kind, item in events:
                    if s.fold is not None:
                        continue  # a fold counts when it ends
                    if kind == "progress" and item["phase"] == "finetune" and item["epoch_end"] and item["val_accuracy"] is not None:
                        t.epochs, t.metric = item["epoch"], item["val_accuracy"]
                        t.curve.append(item["val_accuracy"])
                        if asha is not None and not s.stop_sent:
                            s.keep[item["epoch"]] = asha.keep(item["epoch"], item["val_accuracy"])
                            if not s.keep[item["epoch"]]:
                                s.runner.request_stop.remote(s.run_id)
                                s.stop_sent = True
                    elif kind == "gate":  # a local trial waits at its rung for our answer
                        s.runner.decide.remote(s.keep.get(item, True) and not s.stop_sent, s.run_id)
                if s.ref in ready:
                    t.seconds = (t.seconds if s.fold else 0.0) + time.time() - s.started
                    try:
                        outcome = ray.get(s.ref)
                    except Exception as e:  # a failed trial is recorded, not fatal
                        cause = getattr(e, "cause", None) or e
                        t.state, t.error = (
                            "FAILED",
                            public_reason(cause) if policy is not None else f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}",
                        )
                        if isinstance(e, ray.exceptions.RayActorError):  # the runner died: give the slot a new one
                            s.close()
                            s.__init__(s.runner_class, specs.spec(t.id), None if s.owns_pg else s.pg, s.bundle, s.policy)
                    else:
                        if isinstance(outcome, Paused):
                            t.state = "STOPPED"
                        elif s.fold is not None:
                            metrics = outcome.metrics
                            t.fold_metrics.append(metrics["val_accuracy"])
                            t.epochs += len(metrics["finetune"])
                            if len(t.fold_metrics) == k and t.state != "FAILED":
                                t.state, t.metric = "SUCCEEDED", float(np.mean(t.fold_metrics))
                        else:
                            metrics = outcome.metrics
                            t.state, t.test_accuracy = "SUCCEEDED", metrics["test_accuracy"]
                            t.metric = metrics["val_accuracy"] if metrics["val_accuracy"] is not None else t.metric
                            t.epochs = len(metrics["finetune"])
                            if out_dir is not None and t.metric is not None and rank(t) > best_key and not k:
                                best_key = rank(t)
                                outcome.save(out_dir / "best", trial=t.id, params=t.params)
                                if on_best is not None:
                                    on_best(out_dir / "best")
                    s.trial = None
                    _save(done_file, trials, params, settings, time.time() - t0)
            if on_update is not None:
                on_update(trials)
            if should_stop is not None and should_stop():
                for s in slots:
                    if s.trial is not None:
                        s.runner.request_stop.remote(s.run_id)
                        s.poll = None
                        s.trial.state, s.trial.curve, s.trial.epochs, s.trial.fold_metrics, s.trial.seconds = "PENDING", [], 0, [], 0.0
                        s.trial = None
                for t, _ in pending:
                    if t.state == "RUNNING":  # some folds ran, others did not: all rerun
                        t.state, t.epochs, t.fold_metrics = "PENDING", 0, []
                _save(done_file, trials, params, settings, time.time() - t0)
                raise SearchStopped()
        finished = [t for t in trials if t.state == "SUCCEEDED" and t.metric is not None]
        if k and finished:  # refit the configuration chosen by cross-validation on the usual split
            best = max(finished, key=rank)
            spec = specs.spec(best.id)
            if not slots:  # every trial had finished before this run (a resume): a slot for the refit alone
                slots.append(_Slot(runner, spec, placement_group, 0, policy))
            done: Done = ray.get(slots[0].runner.run.remote(spec.to_dict(), None, 3600.0, None if slots[0].local else slots[0].pg))
            best.test_accuracy = done.metrics["test_accuracy"]
            if out_dir is not None:
                done.save(out_dir / "best", trial=best.id, params=best.params, cv_accuracy=best.metric)
    finally:
        for s in slots:
            s.close()
    finished = [t for t in trials if t.state == "SUCCEEDED" and t.metric is not None]
    best = max(finished, key=rank) if finished else None
    result = SearchResult(trials, [p.name for p in params], best, time.time() - t0, sum(t.epochs for t in trials))
    _save(done_file, trials, params, settings, result.seconds, best)
    if out_dir is not None:
        plot(result, out_dir / "search.png")
    return result


def _save(path: Path | None, trials: list[Trial], params: list[Param], settings: SearchSettings, seconds: float, best: Trial | None = None) -> None:
    if path is not None:
        save_table(path, snapshot(trials, [p.name for p in params], settings, seconds, best))
