"""One running job inside Ray: a threaded actor that trains the job in its execution mode.

Local mode trains in the actor itself (it holds the job's resources); data_parallel makes the
actor the driver of a worker group placed in the job's reservation. The scheduler drains
``poll()`` for progress, log lines and checkpoints, and ``request_stop()`` ends the job at the
next step boundary with the state to resume from.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import deque

import ray

from xsharp.algos.training import Stopped, TrainState
from xsharp.parallel import RunContext, get_mode
from xsharp.spec import parse_spec

from .runner import check_against_data, load_data, summarize


@ray.remote
class JobRunner:
    def __init__(self) -> None:
        self._events: deque = deque()
        self._stop = threading.Event()

    def poll(self) -> list[tuple[str, object]]:
        return [self._events.popleft() for _ in range(len(self._events))]

    def request_stop(self) -> None:
        self._stop.set()

    def run(self, spec_dict: dict, resume: TrainState | None, checkpoint_every: float, placement_group=None):
        """("done", flat, model_meta, metrics) or ("stopped", state)."""
        self._events.append(("pids", [os.getpid()]))
        spec = parse_spec(spec_dict)
        data = load_data(spec)
        check_against_data(spec, data)
        events = self._events
        ctx = RunContext(
            data=data,
            report=lambda e: events.append(("progress", dataclasses.asdict(e))),
            status=lambda message: events.append(("log", message)),
            should_stop=self._stop.is_set,
            resume=resume,
            on_checkpoint=lambda state: events.append(("checkpoint", state)),
            checkpoint_every=checkpoint_every,
            placement_group=placement_group,
        )
        try:
            result = get_mode(spec.mode).run(spec, ctx)
        except Stopped as e:
            return ("stopped", e.state)
        model, metrics = summarize(spec, data, result)
        meta = {"in_shape": list(data.in_shape), "n_classes": data.n_classes, "classes": data.classes}
        return ("done", result.flat, meta, metrics)
