"""What training reports and keeps: progress, the history, a resumable state, the hooks a run is
given, and the stop that carries its state out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Progress:
    phase: str  # "pretrain" or "finetune"
    layer: int | None  # module index while pretraining
    layer_kind: str | None
    epoch: int  # 1-based
    epochs: int
    step: int  # steps done in this phase, 1-based
    steps: int  # steps in this phase
    loss: float  # mean of the epoch so far: reconstruction error or NLL
    samples_per_second: float
    val_accuracy: float | None = None  # at the end of a fine-tuning epoch
    epoch_end: bool = False


@dataclass
class History:
    pretrain: list[dict] = field(default_factory=list)
    finetune: list[dict] = field(default_factory=list)
    samples: int = 0
    seconds: float = 0.0
    first_step_at: float | None = None  # wall clock (time.time()) when the first step finished
    prefetched: int = 0  # batches whose rows were gathered ahead, on the prefetch thread
    resumed_from: list[dict] = field(default_factory=list)  # one entry per resume: where it went on

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


@dataclass
class TrainState:
    """A step boundary: train from (phase, epoch, step) on with these parameters and optimiser state."""

    phase: int  # index into the run's phases: pretrained layers in order, then fine-tuning
    epoch: int  # 0-based epoch within the phase
    step: int  # next step to run within the epoch
    flat: np.ndarray
    optimizer_state: np.ndarray  # the current phase's (a solve phase's: its statistics summed so far)
    epoch_loss: float  # sum of loss x rows so far in this epoch
    epoch_rows: int
    history: History

    @property
    def position(self) -> dict:
        return {"phase": self.phase, "epoch": self.epoch, "step": self.step, "samples": self.history.samples}


@dataclass(kw_only=True)
class TrainHooks:
    """What the loop is told from outside a run, and tells it: progress reports, a stop
    request asked before every step, a state to resume from, and checkpoints (rank 0) at least
    every ``checkpoint_every`` seconds. An execution mode's ``RunContext`` is one of these."""

    report: Callable[[Progress], None] | None = None
    should_stop: Callable[[], bool] | None = None  # yes -> Stopped(state) after that step
    resume: TrainState | None = None  # go on from this step boundary
    on_checkpoint: Callable[[TrainState], None] | None = None
    checkpoint_every: float = 60.0  # seconds between checkpoints


NO_HOOKS = TrainHooks()


class Stopped(Exception):
    """Training stopped at a step boundary on request; ``state`` resumes it (None on other ranks)."""

    def __init__(self, state: TrainState | None = None):
        super().__init__("training stopped on request")
        self.state = state
