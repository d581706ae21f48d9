"""What a run of a job comes to, as typed values a JobRunner hands back through Ray: a trained
model (:class:`Done`), a stop with the state to resume from (:class:`Paused`), and a search's
end (:class:`SearchDone`) or stop (:class:`SearchPaused`). Plain data: they pickle as numpy
arrays, dicts and strings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xsharp.algos import Model
from xsharp.algos.training import TrainState
from xsharp.files import write_atomic


@dataclass(frozen=True, eq=False)
class Done:
    """A job trained to the end: its metrics and the model to save, as plain data."""

    spec: dict  # the spec as trained (JobSpec.to_dict()): an imported dataset pinned to the version it read
    metrics: dict
    flat: np.ndarray  # the trained parameters, host copy
    in_shape: tuple[int, ...]
    n_classes: int
    classes: list[str]
    pipeline: Any = None  # the fitted preprocessing, saved with the model so predict transforms raw rows the same way
    built: Model | None = field(default=None, repr=False)  # the model summarize built; never sent through Ray

    def model(self) -> Model:
        """The trained model on the host: the one built where it trained, or one built here from
        the arrays (each call builds one) when this result came through Ray."""
        if self.built is not None:
            return self.built
        model = Model(self.spec["model"], self.in_shape, self.n_classes, seed=self.spec["seed"], classes=self.classes)
        model.set_flat(self.flat)
        model.pipeline = self.pipeline
        return model

    def save(self, out: Path, **extra: Any) -> None:
        """The job's artifacts in ``out``: model.npz, spec.yaml and metrics.json (with ``extra``)."""
        save_artifacts(out, self.spec, self.model(), self.metrics | extra)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "built": None}  # the arrays travel, not the modules built from them


@dataclass(frozen=True)
class Paused:
    """A job that stopped on request at a step boundary; ``state`` resumes it (None: from the start)."""

    state: TrainState | None


@dataclass(frozen=True)
class SearchDone:
    """A search job's end: its artifacts ({path under the artifact folder: bytes}) and summary."""

    files: dict[str, bytes]
    summary: dict


@dataclass(frozen=True)
class SearchPaused:
    """A search job stopped on request: its search.json, which keeps every finished trial."""

    table: str


def save_artifacts(out: Path, spec: dict, model: Model, metrics: dict) -> None:
    """model.npz (with the spec), spec.yaml and metrics.json, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.npz", spec=spec)
    write_atomic(out / "spec.yaml", yaml.safe_dump(spec, sort_keys=False))
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")


RunOutcome = Done | Paused
SearchOutcome = SearchDone | SearchPaused
