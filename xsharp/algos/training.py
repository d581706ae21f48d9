"""Greedy layer-wise pretraining, then supervised fine-tuning of the whole stack.

One loop serves every execution mode: :func:`run_phases` walks the phases, epochs and steps,
keeps the loss, the progress reports, the checkpoints and the stop requests, and hands each
step to an :class:`Engine`, which says how the step's gradient is computed and applied. The
:class:`ModelEngine` here serves local and data-parallel training: a worker of rank r in a
group of ``world`` takes its contiguous share of each global batch and sums weighted gradients
through ``collective.allreduce``. The parallel modes bring engines of their own (parameter
server, pipeline stages), driven by the same loop.

The batch order and the random numbers depend only on (seed, phase, epoch, step), never on the
number of workers or on where training resumed, so N workers compute what one worker computes,
and a run stopped at a checkpoint and resumed ends where an uninterrupted run ends.

Training is a list of phases (one per pretrained layer, then fine-tuning), each of epochs of
steps. A :class:`TrainState` taken at a step boundary is everything needed to go on from there.

A module trained in closed form (``solvable``: the ELM readouts) gets a *solve* phase in its
place among the pretraining phases, whether or not pretraining is on: one epoch whose steps add
the layer's ``statistics`` of their rows (summed over workers by the same allreduce) into the
phase's state, and whose last step ``solve``s. The accumulated sums stand where an optimiser
state stands, so checkpoints and resumes inside the pass carry them. Its loss is the solve's
residual, counted at the last step.
"""

from __future__ import annotations

import copy
import functools
import itertools
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol

import numpy as np
from pydantic import Field

from xsharp import backend

from .datasets import Dataset
from .flat import FlatLayout
from . import optim
from .model import Model
from .modules.base import SpecModel
from .optim import apply_updates

PRETRAIN_PHASE = 1000  # seed namespaces: pretraining layer i uses PRETRAIN_PHASE + i
FINETUNE_PHASE = 1
BUCKET_BYTES = 1 << 20  # overlapped allreduces: fewer, larger messages (a Ray message costs ~1 ms)
PREFETCH_KB = 1024  # batches smaller than this (KiB) are gathered inline: a thread hand-off costs more
PREFETCH_BYTES = PREFETCH_KB * 1024
MAX_PREFETCH_KB = 1 << 20  # 1 GiB: past any batch that fits in memory


class PhaseSettings(Protocol):
    epochs: int
    batch_size: int
    learning_rate: float
    momentum: float
    weight_decay: float


# --------------------------------------------------------------------------- settings
# The settings of a phase, as the job spec's ``pretrain`` and ``train`` sections hold them
# (``xsharp.spec`` takes them from here) and as a notebook passes them to :func:`train`.
class ScheduleSpec(SpecModel):
    """How the learning rate moves over a phase: ``learning_rate`` times a factor of the epoch."""

    kind: Literal["constant", "step", "cosine", "exponential"] = Field("constant", description="constant, step, cosine or exponential")
    every_epochs: float = Field(10.0, gt=0, le=100_000, description="step: epochs between drops by gamma; exponential: epochs per factor gamma")
    gamma: float = Field(0.1, gt=0, le=1, description="step, exponential: the factor per every_epochs")
    final: float = Field(0.0, ge=0, le=1, description="cosine: the last learning rate, as a share of the first")
    warmup_epochs: float = Field(0.0, ge=0, le=100_000, description="rise linearly from 0 over this many epochs first (any kind)")


class PhaseSpec(SpecModel):
    epochs: int = Field(ge=0, le=100_000)
    batch_size: int = Field(gt=0, le=1_000_000)
    learning_rate: float = Field(gt=0, le=100)
    momentum: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0, lt=1)
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="sgd: SGD with momentum; adam: Adam with decoupled weight decay (AdamW)")
    beta1: float = Field(0.9, ge=0, lt=1, description="adam: decay of the running mean of gradients")
    beta2: float = Field(0.999, ge=0, lt=1, description="adam: decay of the running mean of squared gradients")
    eps: float = Field(1e-8, gt=0, le=1, description="adam: added to the root of the squared-gradient mean")
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec, description="learning-rate schedule over the phase")


class PretrainSpec(PhaseSpec):
    """Greedy layer-wise pretraining of every unsupervised module (rbm, autoencoder), in order."""

    epochs: int = Field(20, ge=0, le=100_000, description="epochs per pretrained layer; 0 skips pretraining (closed-form solves of elm, elm_ae still run)")
    batch_size: int = Field(32, gt=0, le=1_000_000)
    learning_rate: float = Field(0.1, gt=0, le=100)
    momentum: float = Field(0.5, ge=0, lt=1)
    weight_decay: float = Field(2e-4, ge=0, lt=1, description="L2 decay on weight matrices")


class TrainSpec(PhaseSpec):
    """Supervised fine-tuning of the whole stack with minibatch SGD + momentum."""

    epochs: int = Field(50, ge=0, le=100_000)
    batch_size: int = Field(32, gt=0, le=1_000_000, description="global batch: split across data-parallel workers")
    learning_rate: float = Field(0.1, gt=0, le=100)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0, lt=1, description="L2 decay on weight matrices")


def prefetch_bytes(kib: int) -> int | None:
    """The engine's gather-ahead threshold for a ``prefetch`` setting in KiB (0: off, None)."""
    if not 0 <= kib <= MAX_PREFETCH_KB:
        raise ValueError(f"prefetch: must be KiB in 0..{MAX_PREFETCH_KB} (0: off), got {kib}")
    return None if kib == 0 else kib * 1024


class Collective(Protocol):
    rank: int
    world: int

    def allreduce(self, buf: Any) -> Any: ...

    def broadcast(self, buf: Any, root: int = 0) -> Any: ...


class SingleWorker:
    """The collective of a group of one: nothing to exchange."""

    rank, world = 0, 1

    def allreduce(self, buf):
        return buf

    def broadcast(self, buf, root=0):
        return buf


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
    velocity: np.ndarray  # the current phase's optimiser state
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


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of an n-row batch that belong to ``rank``."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


# --------------------------------------------------------------------------- the plan
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
        return _steps_per_epoch(self.rows, self.settings.batch_size)

    def optimizer(self, mask: Any) -> Any:
        """The phase's optimiser over its slice (``mask``: where weight decay applies)."""
        return optim.build(self.settings, mask, self.steps_per_epoch)

    def restrict(self, layer: int | None, sl: slice) -> "Phase":
        """The same phase seen by a part of the model: its own module numbering and slice."""
        return Phase(self.name, layer, self.kind, self.seed_phase, self.settings, sl, self.rows, self.solve)


@dataclass(frozen=True)
class SolveSettings:
    """A solve phase: one pass over the layer's training rows in batches of ``batch_size``. The
    optimiser fields are there for code that reads any phase's settings; nothing descends."""

    batch_size: int
    epochs: int = 1
    learning_rate: float = 0.0
    momentum: float = 0.0
    weight_decay: float = 0.0


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


def state_blocks(opt: Any) -> tuple[int, int]:
    """How an optimiser's flat state is laid out: ``k`` blocks of one entry per parameter, then
    ``c`` shared scalars (SGD: 1, 0; with a schedule: 1, 1; Adam: 2, 1)."""
    one, two = opt.init(np.zeros(1, np.float32)).shape[0], opt.init(np.zeros(2, np.float32)).shape[0]
    return two - one, one - (two - one)


def split_state(state: np.ndarray, sizes: list[int], blocks: tuple[int, int]) -> list[np.ndarray]:
    """Cut a phase's optimiser state into the states of consecutive parameter slices of ``sizes``."""
    k = blocks[0]
    n, bounds = sum(sizes), [0, *itertools.accumulate(sizes)]
    tail = state[k * n :]
    return [np.concatenate([state[b * n + lo : b * n + hi] for b in range(k)] + [tail]) for lo, hi in zip(bounds, bounds[1:])]


def join_state(parts: list[np.ndarray], sizes: list[int], blocks: tuple[int, int]) -> np.ndarray:
    """The inverse of :func:`split_state` (the shared scalars are the first part's)."""
    k = blocks[0]
    return np.concatenate([p[b * m : (b + 1) * m] for b in range(k) for p, m in zip(parts, sizes)] + [parts[0][k * sizes[0] :]])


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

    def ahead(self, k: int) -> "Step | None":
        """The step k later in the same epoch, if there is one."""
        later = self.step + k
        return Step(self.index, self.phase, self.epoch, later, self.seed) if later < self.phase.steps_per_epoch else None

    def rng(self, device: str, offset: int) -> backend.RowRNG:
        """Random numbers for rows ``offset ..`` of this step's batch."""
        generator = backend.rng((self.seed, self.phase.seed_phase, self.epoch, self.step), device)
        return backend.RowRNG(generator, offset, self.size)


# --------------------------------------------------------------------------- engines
class Engine(Protocol):
    """How a step's gradient is computed and applied; :func:`run_phases` does everything else."""

    rank: int  # rank 0 takes checkpoint states and scores validation
    depth: int  # steps in flight at most; 1 is synchronous

    def start(self, flat: np.ndarray | None) -> None:
        """Begin from ``flat`` (a resume) or from the initial parameters; all workers agree."""

    def begin_phase(self, index: int, phase: Phase, velocity: np.ndarray | None) -> None: ...

    def submit(self, step: Step) -> Any:
        """Start the step; a handle for :meth:`result`."""

    def result(self, handle: Any) -> tuple[float, bool]:
        """The step's mean loss over its global batch, and whether to stop after it."""

    def validate(self, x: np.ndarray, y: np.ndarray) -> float | None: ...

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Host copies of all parameters and of the current phase's optimiser state."""

    def close(self) -> None: ...


class Prefetcher:
    """Gathers the rows of an upcoming step on a background thread while this step computes.

    Below ``min_bytes`` a batch is gathered inline (a thread hand-off costs more than copying a
    small batch); ``None`` gathers every batch inline (off). Either way the same rows come back,
    so results never depend on it."""

    def __init__(self, min_bytes: int | None = PREFETCH_BYTES):
        self.min_bytes = min_bytes
        self.arrays: tuple = ()
        self.hits = 0  # batches that were ready ahead
        self._ahead: tuple | None = None
        self._pool: ThreadPoolExecutor | None = None

    def source(self, *arrays: Any) -> None:
        self.arrays, self._ahead = arrays, None

    def _gather(self, rows: np.ndarray) -> tuple:
        r = backend.xp_of(self.arrays[0]).asarray(rows)
        return tuple(a[r] for a in self.arrays)

    def get(self, key: Any, rows: np.ndarray) -> tuple:
        if self._ahead is not None and self._ahead[0] == key:
            future, self._ahead = self._ahead[1], None
            self.hits += 1
            return future.result()
        return self._gather(rows)

    def ahead(self, key: Any, rows: np.ndarray) -> None:
        if self.min_bytes is None or len(rows) * sum(a[0].nbytes for a in self.arrays) < self.min_bytes:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="xsharp-prefetch")
        self._ahead = (key, self._pool.submit(self._gather, rows))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool, self._ahead = None, None


class ModelEngine:
    """Local and data-parallel training: this worker's share of every batch on its own copy of
    the model, the weighted gradients (with the loss and the stop flag) summed by the collective,
    then the same optimiser step on every worker.

    ``stride``: the step this worker computes after step s is s + stride (the next batch is
    gathered ahead while s computes, for batches of at least ``prefetch_bytes``; None: never).
    ``stream``: the training rows come from an imported
    dataset's shards (``xsharp.data.stream``) instead of ``x`` and ``y`` in memory; a
    pretraining or solve phase then passes each batch through the layers below as it comes."""

    depth = 1
    buckets: list[tuple[int, int, int]] | None = None  # fine-tuning overlapped with its allreduces (ring only)
    overlap = True  # subclasses whose fine-tuning gradient does not come from loss_and_grad turn it off

    def __init__(self, model: Model, x: Any, y: Any, collective: Collective | None = None, *, stride: int = 1, prefetch_bytes: int | None = PREFETCH_BYTES, stream: Any = None):
        backend.steady_heap()  # batch-sized temporaries reused, not mapped afresh each step
        self.model, self.xp = model, model.xp
        self.coll = collective or SingleWorker()
        self.rank, self.world = self.coll.rank, self.coll.world
        self.x = backend.to_device(x, model.device) if x is not None else None
        self.y = backend.to_device(y, model.device) if y is not None else None
        self.mask = model.layout.decay_mask(self.xp, model.flat.dtype)
        self.buf = self.xp.zeros(model.layout.size + 2, dtype=model.flat.dtype)  # [gradient, loss, stop]
        self.stride = stride
        self.fetch = Prefetcher(prefetch_bytes)
        self.stream = stream

    def start(self, flat: np.ndarray | None) -> None:
        if flat is not None:
            self.model.set_flat(flat)
        self.coll.broadcast(self.model.flat, 0)  # every worker starts from rank 0's parameters

    def begin_phase(self, index: int, phase: Phase, velocity: np.ndarray | None) -> None:
        if phase.solve:
            return self.begin_solve(phase, velocity)
        model = self.model
        self.phase, self.sl = phase, phase.sl
        self.size = phase.sl.stop - phase.sl.start
        self.flat_p = model.flat[phase.sl]
        self.opt = phase.optimizer(self.mask[phase.sl])
        self.velocity = self.opt.init(self.flat_p)
        if velocity is not None:
            self.velocity[...] = self.xp.asarray(velocity)
        self.module = model.modules[phase.layer] if phase.layer is not None else None
        if self.stream is not None:
            pass  # batches come from the stream
        elif self.module is not None:
            self.fetch.source(model.transform(self.x, upto=phase.layer))  # inputs of the layer, once
        else:
            self.fetch.source(self.x, self.y)
        self.buckets = self._buckets() if self.overlap and self.module is None and getattr(self.coll, "overlaps", False) and self.size == model.layout.size and backend.to_host(self.buf) is self.buf else None

    def _buckets(self) -> list[tuple[int, int, int]]:
        """Fine-tuning with overlap: ranges of the [gradient, loss, stop] buffer sent in turn as
        the backward pass fills them (last module first), each of at least BUCKET_BYTES where
        the modules allow; (module, start, stop): the range is complete once ``module`` is
        packed. The same on every worker, so their allreduces pair up."""
        out, stop, slices = [], self.size + 2, self.model.layout.module_slices
        for m in range(len(slices) - 1, -1, -1):
            start = slices[m].start
            if m == 0 or (stop - start) * self.buf.itemsize >= getattr(self.coll, "bucket_bytes", BUCKET_BYTES):
                out.append((m, start, stop))
                stop = start
        return out

    def rows(self, step: Step) -> tuple[int, int]:
        return shard(step.size, self.rank, self.world)

    def batch(self, step: Step, lo: int, hi: int) -> tuple:
        """This worker's rows of the step, gathered ahead when it pays; the next one is started."""
        if self.stream is not None:
            return self.streamed(step, hi - lo)
        got = self.fetch.get(step.key, step.idx[lo:hi])
        nxt = step.ahead(self.stride)
        if nxt is not None:
            nlo, nhi = self.rows(nxt)
            if nhi > nlo:
                self.fetch.ahead(nxt.key, nxt.idx[nlo:nhi])
        return got

    def streamed(self, step: Step, count: int) -> tuple:
        """This worker's ``count`` rows of the step from the stream, on the device; a layer's
        inputs (pretraining, solving) are passed through the layers below it."""
        phase = step.phase
        rows = self.stream.batch(phase.seed_phase, step.epoch, step.step, count, phase.settings.batch_size)
        x = backend.to_device(rows.x, self.model.device)
        if phase.layer is not None:
            x = self.model.transform(x, upto=phase.layer)
            return (x, backend.to_device(rows.y, self.model.device)) if phase.solve else (x,)
        return x, backend.to_device(rows.y, self.model.device)

    def gradient(self, step: Step, lo: int, hi: int, out: Any) -> Any:
        """The gradient of rows [lo, hi) of the step's batch, weighted by their share, into
        ``out``; returns the loss weighted the same way (fine-tuning's stays on the device)."""
        weight = (hi - lo) / step.size
        rng = step.rng(self.model.device, lo)
        if self.module is not None:
            (h,) = self.batch(step, lo, hi)
            layer = self.phase.layer
            grads, loss = self.module.pretrain_step(self.model.params[layer], h, rng)
            self.model.layout.pack(layer, grads, self.model.grad)
            grad = self.model.grad[self.sl]
        else:
            x, y = self.batch(step, lo, hi)
            whole = out.shape[0] == self.model.layout.size
            loss, grad = self.model.loss_and_grad(x, y, rng, out=out if whole else None)  # straight into out: no copy
        if grad is not out:
            self.xp.multiply(grad, weight, out=out)
        elif weight != 1.0:
            out *= weight
        return loss * weight

    def begin_solve(self, phase: Phase, stats: np.ndarray | None) -> None:
        """A solve phase: its state (``self.velocity``) is the statistics summed so far."""
        model, layer = self.model, phase.layer
        self.phase, self.sl, self.opt = phase, phase.sl, None
        self.module = model.modules[layer]
        size = self.module.statistics_size(model.params[layer])
        self.velocity = self.xp.zeros(size, dtype=model.flat.dtype) if stats is None else self.xp.asarray(stats, dtype=model.flat.dtype).copy()
        self.stats_buf = self.xp.zeros(size + 1, dtype=model.flat.dtype)  # [statistics, stop]
        if self.stream is None:
            self.fetch.source(model.transform(self.x, upto=layer), self.y)  # inputs of the layer, once; labels for elm

    def solve_step(self, step: Step) -> tuple[float, bool]:
        """Add this step's statistics (every worker's rows) to the sums; the last step solves."""
        layer, buf = self.phase.layer, self.stats_buf
        params, size = self.model.params[layer], buf.shape[0] - 1
        lo, hi = self.rows(step)
        if hi > lo:
            x, y = self.batch(step, lo, hi)
            buf[:size] = self.module.statistics(params, x, y)
        else:
            buf[:size] = 0
        buf[size] = 1.0 if step.stop else 0.0
        reduced = self.coll.allreduce(buf)
        self.velocity += reduced[:size]
        loss = 0.0
        if step.step == self.phase.steps_per_epoch - 1:  # every row is in: solve, on every worker alike
            solved, error = self.module.solve(params, self.velocity)
            for name, value in solved.items():
                params[name][...] = value  # views into the flat buffer
            loss = error * self.phase.rows / step.size  # the loop weighs a step's loss by its rows
        return loss, bool(backend.to_host(reduced[size : size + 1])[0] > 0)

    def submit(self, step: Step) -> tuple[float, bool]:
        if self.phase.solve:
            return self.solve_step(step)
        if self.buckets is not None:
            return self.submit_overlapped(step)
        size, buf = self.size, self.buf
        lo, hi = self.rows(step)
        if hi > lo:
            buf[size] = self.gradient(step, lo, hi, buf[:size])
        else:
            buf[: size + 1] = 0
        buf[size + 1] = 1.0 if step.stop else 0.0
        reduced = self.coll.allreduce(buf[: size + 2])
        self.apply(reduced[:size])
        return loss_and_stop(reduced[size : size + 2])

    def submit_overlapped(self, step: Step) -> tuple[float, bool]:
        """``submit`` for fine-tuning on the ring: each bucket's allreduce starts as soon as the
        backward pass has filled it, on the collective's thread, while earlier layers compute.
        Per element the same products and sums as ``submit``: the same result."""
        size, buf, buckets = self.size, self.buf, iter(self.buckets)
        lo, hi = self.rows(step)
        weight = (hi - lo) / step.size
        pending = []
        nxt = next(buckets)

        def packed(m: int, loss: float) -> None:
            nonlocal nxt
            while nxt is not None and nxt[0] == m:
                _, a, b = nxt
                if b > size:  # the first bucket carries the loss and the stop flag
                    buf[size], buf[size + 1] = loss * weight, 1.0 if step.stop else 0.0
                    b_grad = size
                else:
                    b_grad = b
                if weight != 1.0:
                    buf[a:b_grad] *= weight
                pending.append(self.coll.allreduce_async(buf[a:b]))
                nxt = next(buckets, None)

        if hi > lo:
            x, y = self.batch(step, lo, hi)
            self.model.loss_and_grad(x, y, step.rng(self.model.device, lo), out=buf[:size], packed=packed)
        else:  # no rows here: zeros, sent in the same buckets as every other worker's
            buf[:size] = 0
            for m in range(len(self.model.modules) - 1, -1, -1):
                packed(m, 0.0)
        for f in pending:
            f.result()
        self.apply(buf[:size])
        return loss_and_stop(buf[size : size + 2])

    def apply(self, grad: Any) -> None:
        updates, self.velocity = self.opt.update(grad, self.velocity, self.flat_p)
        apply_updates(self.flat_p, updates)

    def result(self, handle: tuple[float, bool]) -> tuple[float, bool]:
        return handle

    def validate(self, x: Any, y: Any) -> float | None:
        return self.model.accuracy(x, y) if self.rank == 0 and len(x) else None

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        return self.model.get_flat(), backend.to_host(self.velocity).copy()

    def close(self) -> None:
        self.fetch.close()
        if self.stream is not None:
            self.stream.close()


def loss_and_stop(pair: Any) -> tuple[float, bool]:
    """A step's [loss, stop] read off the device in one copy: on a GPU the step's one wait."""
    loss, stop = backend.to_host(pair).tolist()
    return loss, stop > 0


# --------------------------------------------------------------------------- the loop
def fit(
    model: Model,
    data: Dataset,
    *,
    pretrain: PhaseSettings | None,
    train: PhaseSettings,
    seed: int = 0,
    collective: Collective | None = None,
    hooks: TrainHooks = NO_HOOKS,
    prefetch: int = PREFETCH_KB,
) -> History:
    """Pretrain every unsupervised module in order, then fine-tune the whole stack.

    ``hooks.should_stop`` is asked before every step; when any worker says yes, all stop after
    that same step and raise :class:`Stopped` carrying the state (on rank 0).
    ``hooks.on_checkpoint`` (rank 0) receives a state at least every ``hooks.checkpoint_every``
    seconds; ``hooks.resume`` goes on from a state. ``prefetch``: the
    rows of the next batch are gathered on a background thread while this one computes, for
    batches of at least this many KiB (0: never); the numbers are the same either way.
    """
    coll = collective or SingleWorker()
    stream = data.train.stream(train.batch_size, seed, coll.rank, coll.world) if getattr(data, "train", None) is not None else None
    engine = ModelEngine(model, data.x_train, data.y_train, collective, prefetch_bytes=prefetch_bytes(prefetch), stream=stream)
    phases = plan(model.modules, model.layout, pretrain, train, data.n_train)
    history = run_phases(engine, data, phases, seed=seed, hooks=hooks)
    history.prefetched += engine.fetch.hits  # (a resumed history goes on counting)
    return history


def train(
    model: Model,
    data: Dataset,
    *,
    pretrain: PretrainSpec | None = None,
    seed: int = 0,
    report: Callable[[Progress], None] | None = None,
    prefetch: int = PREFETCH_KB,
    **settings: Any,
) -> History:
    """Train ``model`` on ``data``'s training rows in this process: the notebook's entry point.

    ``settings`` are the fine-tuning phase's, by name, as a job spec's ``train`` section holds
    them (:class:`TrainSpec`: ``epochs``, ``batch_size``, ``learning_rate``, ``momentum``,
    ``weight_decay``, ``optimizer``, ``schedule`` ...); bad ones raise ``ValueError`` naming
    the field. ``pretrain`` (a :class:`PretrainSpec`) turns on greedy layer-wise pretraining of
    the unsupervised modules first. ``report`` sees a :class:`Progress` as training goes.
    The trained parameters are in ``model``; the history of losses and validation accuracies
    comes back.

        history = train(model, data, epochs=10, batch_size=32, learning_rate=0.1)
    """
    return fit(model, data, pretrain=pretrain, train=TrainSpec(**settings), seed=seed, hooks=TrainHooks(report=report), prefetch=prefetch)


def run_phases(
    engine: Engine,
    data: Dataset,
    phases: list[Phase],
    *,
    seed: int = 0,
    hooks: TrainHooks = NO_HOOKS,
) -> History:
    """Run ``phases`` step by step through ``engine`` (see :func:`fit`).

    Up to ``engine.depth`` steps are in flight; their results are taken in order. A stop or a
    checkpoint waits for the steps in flight, so a state is always at a step boundary, and no
    step of the next epoch starts before the epoch is scored."""
    n = int(data.n_train)
    report, should_stop, resume = hooks.report, hooks.should_stop, hooks.resume
    on_checkpoint, checkpoint_every = hooks.on_checkpoint, hooks.checkpoint_every
    try:
        if resume is not None:
            history = resume.history
            history.resumed_from.append(resume.position)
            start = (resume.phase, resume.epoch, resume.step)
        else:
            history = History()
            start = (0, 0, 0)
        engine.start(resume.flat if resume is not None else None)
        t0 = time.perf_counter() - history.seconds
        last_report = last_checkpoint = time.perf_counter()

        for p, phase in enumerate(phases):
            if p < start[0]:
                continue
            s = phase.settings
            engine.begin_phase(p, phase, resume.velocity if (p == start[0] and resume is not None) else None)
            n_steps = phase.steps_per_epoch
            steps = s.epochs * n_steps
            first_epoch = start[1] if p == start[0] else 0
            for epoch in range(first_epoch, s.epochs):
                first_step = start[2] if (p, epoch) == start[:2] else 0
                if first_step and resume is not None:
                    total_loss, seen = resume.epoch_loss, resume.epoch_rows
                else:
                    total_loss, seen = 0.0, 0
                t_epoch, rows_at_start = time.perf_counter(), seen
                inflight: deque = deque()
                nxt, halt, save = first_step, False, False
                while nxt < n_steps or inflight:
                    if nxt < n_steps and not (halt or save) and len(inflight) < engine.depth:
                        stop_here = should_stop is not None and should_stop()
                        step = Step(p, phase, epoch, nxt, seed, stop_here)
                        inflight.append((nxt, step.size, engine.submit(step)))
                        nxt += 1
                        continue
                    done, rows, handle = inflight.popleft()
                    loss, stop = engine.result(handle)
                    total_loss += loss * rows
                    seen += rows
                    history.samples += rows
                    if history.first_step_at is None:
                        history.first_step_at = time.time()
                    now = time.perf_counter()
                    rate = (seen - rows_at_start) / max(now - t_epoch, 1e-9)
                    epoch_end = done == n_steps - 1
                    if report is not None and not (phase.name == "finetune" and epoch_end) and (epoch_end or now - last_report >= 0.2):
                        last_report = now
                        report(Progress(phase.name, phase.layer, phase.kind, epoch + 1, s.epochs, epoch * n_steps + done + 1, steps, total_loss / seen, rate, epoch_end=epoch_end))
                    halt = halt or stop
                    save = save or (on_checkpoint is not None and now - last_checkpoint >= checkpoint_every)
                    if (halt or save) and not inflight:  # at a step boundary: nothing in flight
                        history.seconds = now - t0
                        position = (p, epoch, done + 1) if not epoch_end else (p, epoch + 1, 0)
                        state = None
                        if halt and epoch_end:
                            _close_epoch(engine, data, history, phase, epoch, total_loss / n)
                        if engine.rank == 0:
                            carried = (0.0, 0) if epoch_end else (total_loss, seen)
                            state = TrainState(*position, *engine.snapshot(), *carried, copy.deepcopy(history))
                        if halt:
                            raise Stopped(state)
                        if on_checkpoint is not None and state is not None:
                            on_checkpoint(state)
                        last_checkpoint, save = now, False
                val = _close_epoch(engine, data, history, phase, epoch, total_loss / n)
                if report is not None and phase.name == "finetune":
                    rate = (seen - rows_at_start) / max(time.perf_counter() - t_epoch, 1e-9)
                    report(Progress("finetune", None, None, epoch + 1, s.epochs, (epoch + 1) * n_steps, steps, total_loss / n, rate, val, True))

        history.seconds = time.perf_counter() - t0
        return history
    finally:
        engine.close()


def _close_epoch(engine: Engine, data: Dataset, history: History, phase: Phase, epoch: int, mean_loss: float) -> float | None:
    """Record an epoch in the history; fine-tuning epochs are scored on the validation rows (rank 0)."""
    if phase.name == "pretrain":
        history.pretrain.append({"layer": phase.layer, "kind": phase.kind, "epoch": epoch + 1, "reconstruction_error": mean_loss})
        return None
    val = engine.validate(data.x_val, data.y_val)
    history.finetune.append({"epoch": epoch + 1, "loss": mean_loss, "val_accuracy": val})
    return val
