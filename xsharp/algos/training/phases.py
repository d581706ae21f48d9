"""The plan of a run: its phases (each pretrained or solved layer in order, then fine-tuning),
and the steps of a phase, each a batch of rows and the key of its random numbers.

The batch order and the random numbers depend only on (seed, phase, epoch, step), never on the
number of workers or on where training resumed, so N workers compute what one worker computes,
and a run stopped at a checkpoint and resumed ends where an uninterrupted run ends.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from xsharp import backend

from .. import optim
from ..flat import FlatLayout
from .settings import PhaseSettings, SolveSettings

PRETRAIN_PHASE = 1000  # seed namespaces: pretraining layer i uses PRETRAIN_PHASE + i
FINETUNE_PHASE = 1


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of an n-row batch that belong to ``rank``."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


@dataclass
class Phase:
    name: str  # "pretrain" | "finetune"
    layer: int | None  # the pretrained module
    kind: str | None  # its kind
    seed_phase: int
    settings: Any
    sl: slice  # the parameters this phase trains, in the flat buffer
    rows: int  # training rows
    solve: bool = False  # a closed-form solve of ``layer`` (name "pretrain": it is that layer's greedy phase)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.rows // self.settings.batch_size)

    def optimizer(self, mask: Any) -> Any:
        """The phase's optimiser over its slice (``mask``: where weight decay applies)."""
        return optim.build(self.settings, mask, self.steps_per_epoch)

    def restrict(self, layer: int | None, sl: slice) -> Phase:
        """The same phase seen by a part of the model: its own module numbering and slice."""
        return Phase(self.name, layer, self.kind, self.seed_phase, self.settings, sl, self.rows, self.solve)


def plan(modules: list, layout: FlatLayout, pretrain: PhaseSettings | None, train: PhaseSettings, rows: int) -> list[Phase]:
    """The run's phases: each pretrainable module in order (if pretraining is on) and each
    solvable module in its place (always: the solve is its training), then fine-tuning."""
    out = []
    pretraining = pretrain is not None and pretrain.epochs > 0
    for i, module in enumerate(modules):
        if module.solvable:
            settings = SolveSettings(module.options.solve_batch)
            out.append(Phase("pretrain", i, module.kind, PRETRAIN_PHASE + i, settings, layout.module_slices[i], rows, solve=True))
        elif pretraining and module.pretrainable:
            out.append(Phase("pretrain", i, module.kind, PRETRAIN_PHASE + i, pretrain, layout.module_slices[i], rows))
    out.append(Phase("finetune", None, None, FINETUNE_PHASE, train, slice(0, layout.size), rows))
    return out


@functools.lru_cache(maxsize=8)
def batch_order(seed: int, seed_phase: int, epoch: int, n: int) -> np.ndarray:
    """The epoch's permutation of the n training rows (read-only: it is shared)."""
    order = np.random.default_rng(backend.seed_of(seed, seed_phase, epoch)).permutation(n)
    order.flags.writeable = False
    return order


@dataclass(frozen=True)
class Step:
    """One optimiser step: which rows of the training set, and the key of its random numbers.

    Small and self-describing, so it travels to remote workers as it is."""

    index: int  # the phase's index in the run
    phase: Phase
    epoch: int
    step: int
    seed: int
    stop: bool = False  # the driver asks to stop after this step

    @property
    def size(self) -> int:
        """Rows in the step's global batch (the last step of an epoch may be short)."""
        bs = self.phase.settings.batch_size
        return min(bs, self.phase.rows - self.step * bs)

    @property
    def idx(self) -> np.ndarray:
        bs = self.phase.settings.batch_size
        return batch_order(self.seed, self.phase.seed_phase, self.epoch, self.phase.rows)[self.step * bs : (self.step + 1) * bs]

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.index, self.epoch, self.step)

    def ahead(self, k: int) -> Step | None:
        """The step k later in the same epoch, if there is one."""
        later = self.step + k
        return Step(self.index, self.phase, self.epoch, later, self.seed) if later < self.phase.steps_per_epoch else None

    def rng(self, device: str, offset: int) -> backend.RowRNG:
        """Random numbers for rows ``offset ..`` of this step's batch."""
        generator = backend.rng((self.seed, self.phase.seed_phase, self.epoch, self.step), device)
        return backend.RowRNG(generator, offset, self.size)
