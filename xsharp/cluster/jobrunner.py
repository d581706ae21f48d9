"""One running job inside Ray: a threaded actor that trains the job in its execution mode.

Local mode trains in the actor itself (it holds the job's resources); data_parallel makes the
actor the driver of a worker group placed in the job's reservation. The scheduler drains
``poll()`` for progress, log lines and checkpoints, and ``request_stop()`` ends the job at the
next step boundary with the state to resume from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import ray

from xsharp.algos.datasets import Dataset
from xsharp.algos.training import Stopped, TrainState
from xsharp.backend import cap_heap
from xsharp.data.catalog import Catalog
from xsharp.data.folds import cv_fold
from xsharp.fileguard import ANYWHERE
from xsharp.files import load_files, save_files
from xsharp.parallel import RunContext
from xsharp.searchspec import settings_of, split_space
from xsharp.spec import JobSpec, parse_spec

from .policy import Policy
from .results import Paused, RunOutcome, SearchDone, SearchOutcome, SearchPaused
from .runner import execute, load_data
from .search import SearchStopped, run_search, snapshot


@ray.remote
class JobRunner:
    def __init__(self, policy: Policy | None = None) -> None:
        # A job of the service: its files come through the server's data roots, its process
        # has a memory limit, its model a parameter cap. None: a user's own run, unconfined.
        self._policy = policy
        self._guard = policy.guard() if policy else ANYWHERE
        self._max_parameters = policy.max_parameters if policy else None
        self._memory_limit = policy.runner_memory_bytes if policy else None
        # a service job's dataset is pinned to OWNER/NAME@VERSION at submit, in the service's catalog
        self._catalog = Catalog(policy.datasets_root) if policy and policy.datasets_root else None
        cap_heap(self._memory_limit)
        self._events: deque = deque()
        self._stops: dict[int, threading.Event] = {}
        self._decided = threading.Event()
        self._wake = threading.Condition()  # poll(wait) returns early on a gate or when no run is on
        self._gate = False
        self._ended: set[int] = set()  # run ids whose run has returned
        self._data: dict[str, Dataset] = {}  # a runner that serves many trials loads each data set once

    def poll(self, wait: float = 0.0, run_id: int | None = None) -> list[tuple[str, object]]:
        """The events so far. With ``wait``, first wait up to that long until a gate waits for
        an answer or run ``run_id`` has returned (whether or not it has started yet): a search
        polls its slots a few times a second, not hundreds, and those calls would take the
        interpreter from the training thread."""
        if wait > 0:
            with self._wake:
                self._wake.wait_for(lambda: self._gate or run_id in self._ended, timeout=wait)
                self._gate = False
        return [self._events.popleft() for _ in range(len(self._events))]

    def _signal(self, gate: bool = False, ended: int | None = None) -> None:
        with self._wake:
            self._gate = self._gate or gate
            if ended is not None:
                self._ended.add(ended)
            self._wake.notify_all()

    def _stop_of(self, run_id: int) -> threading.Event:
        # One event per run, never cleared: a stop sent before its run starts still holds, and a
        # late stop for a finished trial cannot reach the next trial on this runner.
        return self._stops.setdefault(run_id, threading.Event())

    def request_stop(self, run_id: int = 0) -> None:
        self._stop_of(run_id).set()

    def decide(self, keep: bool, run_id: int = 0) -> None:
        """Answer a gate (see ``run``): go on, or stop at the next step."""
        if not keep:
            self._stop_of(run_id).set()
        self._decided.set()

    def run(
        self, spec_dict: dict, resume: TrainState | None, checkpoint_every: float, placement_group=None, gate_epochs=(), fold=None, run_id: int = 0
    ) -> RunOutcome:
        """Train the job: :class:`Done`, or :class:`Paused` with the state to resume from.

        At the end of each fine-tuning epoch in ``gate_epochs`` training waits (as Ray Tune's
        report does) until ``decide`` says whether it goes on: a search's early stopping then
        acts at the rung itself, however fast the epochs are. ``fold``: (fold, folds) of the
        training rows validate (a search's cross-validation).
        """
        try:
            return self._run(spec_dict, resume, checkpoint_every, placement_group, gate_epochs, fold, run_id)
        finally:
            self._signal(ended=run_id)

    def _run(self, spec_dict, resume, checkpoint_every, placement_group, gate_epochs, fold, run_id) -> RunOutcome:
        stop = self._stop_of(run_id)
        events = self._events
        events.append(("pids", [os.getpid()]))
        spec = parse_spec(spec_dict)
        gates = set(gate_epochs)

        def report(e) -> None:
            events.append(("progress", dataclasses.asdict(e)))
            if e.phase == "finetune" and e.epoch_end and e.epoch in gates and e.epoch < e.epochs:
                self._decided.clear()
                events.append(("gate", e.epoch))
                self._signal(gate=True)
                self._decided.wait(timeout=600)

        def context(data) -> RunContext:
            return RunContext(
                data=data,
                report=report,
                status=lambda message: events.append(("log", message)),
                should_stop=stop.is_set,
                resume=resume,
                on_checkpoint=lambda state: events.append(("checkpoint", state)),
                checkpoint_every=checkpoint_every,
                placement_group=placement_group,
                memory_limit=self._memory_limit,
            )

        try:
            return execute(spec, lambda spec: self._load(spec, fold), context, max_parameters=self._max_parameters)
        except Stopped as e:
            return Paused(e.state)

    def _load(self, spec: JobSpec, fold: tuple[int, int] | None) -> Dataset:
        key = json.dumps([spec.data.model_dump(), spec.seed], sort_keys=True)
        if key not in self._data:
            self._data = {key: load_data(spec, self._guard, self._catalog)}  # keep one: trials of a search share their data
        data = self._data[key]
        return cv_fold(data, fold[0], fold[1], spec.seed) if fold is not None else data

    def search(self, raw: dict, previous: str | None, placement_group, best: dict[str, bytes] | None = None) -> SearchOutcome:
        """Run a search job's trials in its reservation (one bundle a slot).

        :class:`SearchDone` with the artifacts, or :class:`SearchPaused` with search.json, whose
        stopped state carries every finished trial, so resuming never reruns one. ``best``
        is the best model so far ({file name: bytes}) of an earlier run of the search; each new
        best model goes out as a ("best", files) event, so neither a pause nor a crash loses it.
        """
        stop = self._stop_of(0)
        self._events.append(("pids", [os.getpid()]))
        out = Path(tempfile.mkdtemp(prefix="xsharp-search-"))
        if previous:
            (out / "search.json").write_text(previous)
        if best:
            save_files(out / "best", best)
        seen: dict[str, Any] = {"done": -1, "table": None, "at": 0.0}
        settings, names, started = settings_of(raw), [p.name for p in split_space(raw)[1]], time.time()

        def update(trials) -> None:
            done = sum(t.state in ("SUCCEEDED", "STOPPED", "FAILED") for t in trials)
            # The trial table for the API while the search runs: on each change, at most twice a second
            table, now = [(t.state, t.epochs) for t in trials], time.time()
            if table != seen["table"] and (done != seen["done"] or now - seen["at"] >= 0.5):
                seen["table"], seen["at"] = table, now
                self._events.append(("trials", snapshot(trials, names, settings, now - started)))
            if done != seen["done"]:
                seen["done"] = done
                scores = [t.metric for t in trials if t.state == "SUCCEEDED" and t.metric is not None]
                self._events.append(
                    (
                        "progress",
                        {
                            "phase": "search",
                            "layer": None,
                            "layer_kind": None,
                            "epoch": done,
                            "epochs": len(trials),
                            "step": done,
                            "steps": len(trials),
                            "loss": None,
                            "samples_per_second": None,
                            "val_accuracy": max(scores) if scores else None,
                            "epoch_end": False,
                        },
                    )
                )

        try:
            result = run_search(
                raw,
                out,
                on_update=update,
                should_stop=stop.is_set,
                placement_group=placement_group,
                on_best=lambda d: self._events.append(("best", load_files(d))),
                max_trials=None,
                policy=self._policy,
                runner=JobRunner,
            )
        except SearchStopped:
            return SearchPaused((out / "search.json").read_text())
        files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        top = result.best
        summary = {
            "trials": len(result.trials),
            "trial_epochs": result.trial_epochs,
            "seconds": result.seconds,
            "best_trial": top.id if top else None,
            "best_params": top.params if top else None,
            "val_accuracy": top.metric if top else None,
            "test_accuracy": top.test_accuracy if top else None,
        }
        return SearchDone(files, summary)
