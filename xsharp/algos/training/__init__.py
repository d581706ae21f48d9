"""Greedy layer-wise pretraining, then supervised fine-tuning of the whole stack.

One loop serves every execution mode: :func:`run_phases` (``loop``) walks the phases, epochs and
steps and hands each step to an :class:`Engine` (``engine``), which says how the step's gradient
is computed and applied. Training is a list of phases (``phases``: one per pretrained or solved
layer, then fine-tuning), each of epochs of steps; a :class:`TrainState` (``records``) taken at a
step boundary is everything needed to go on from there. ``settings`` holds a phase's settings as
the job spec has them, ``prefetch`` the input overlap, ``collective`` what the loop needs of a
group of workers.
"""

from .collective import Collective, OverlappedAllreduce, SingleWorker
from .engine import Engine, ModelEngine, loss_and_stop
from .loop import fit, run_phases, train
from .phases import FINETUNE_PHASE, PRETRAIN_PHASE, Phase, Step, batch_order, plan, shard
from .prefetch import MAX_PREFETCH_KB, PREFETCH_BYTES, PREFETCH_KB, Prefetcher, prefetch_bytes
from .records import NO_HOOKS, History, Progress, Stopped, TrainHooks, TrainState
from .settings import PhaseSettings, PhaseSpec, PretrainSpec, ScheduleSpec, SolveSettings, TrainSpec

__all__ = [
    "FINETUNE_PHASE",
    "MAX_PREFETCH_KB",
    "NO_HOOKS",
    "PREFETCH_BYTES",
    "PREFETCH_KB",
    "PRETRAIN_PHASE",
    "Collective",
    "Engine",
    "History",
    "ModelEngine",
    "OverlappedAllreduce",
    "Phase",
    "PhaseSettings",
    "PhaseSpec",
    "Prefetcher",
    "PretrainSpec",
    "Progress",
    "ScheduleSpec",
    "SingleWorker",
    "SolveSettings",
    "Step",
    "Stopped",
    "TrainHooks",
    "TrainSpec",
    "TrainState",
    "batch_order",
    "fit",
    "loss_and_stop",
    "plan",
    "prefetch_bytes",
    "run_phases",
    "shard",
    "train",
]
