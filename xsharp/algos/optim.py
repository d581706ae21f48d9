"""Optimisers over flat parameter buffers, Optax style: ``init(params) -> state`` and
``update(grads, state, params) -> (updates, state)``; ``apply_updates`` adds in place so
module views into the buffer stay valid.

An optimiser's state is one flat array (so checkpoints and resumes carry it as they carry the
parameters): SGD's is the velocity; with a learning-rate schedule one more entry counts the
steps; Adam's is ``[m, v, t]``. Each optimiser declares that layout (``state_layout``), which
is how the parallel modes cut the state into the parts of their parameter shards and join it
back. Schedules map the step count (an int, or a 0-d array on the
parameters' device, so no step waits on a device-to-host copy) to a learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import numpy as np

from xsharp.backend import xp_of

Schedule = Callable[[Any], Any]  # step (0-based) -> learning rate
LearningRate = float | Schedule


# --------------------------------------------------------------------------- schedules
def constant(learning_rate: float) -> Schedule:
    return lambda t: learning_rate + 0.0 * t


def step_decay(learning_rate: float, every: float, gamma: float = 0.1) -> Schedule:
    """``lr * gamma ** floor(t / every)``: drop by ``gamma`` every ``every`` steps."""
    return lambda t: learning_rate * gamma ** xp_of(t).floor(t / every)


def exponential_decay(learning_rate: float, every: float, gamma: float) -> Schedule:
    """``lr * gamma ** (t / every)``: a smooth fall by ``gamma`` per ``every`` steps."""
    return lambda t: learning_rate * gamma ** (t / every)


def cosine_decay(learning_rate: float, total: float, final: float = 0.0) -> Schedule:
    """Half a cosine from ``lr`` at step 0 to ``final * lr`` at step ``total`` (flat after)."""

    def schedule(t: Any) -> Any:
        xp = xp_of(t)
        progress = xp.minimum(t, total) / max(total, 1)
        return learning_rate * (final + (1.0 - final) * 0.5 * (1.0 + xp.cos(math.pi * progress)))

    return schedule


def warmup(schedule: Schedule, steps: float) -> Schedule:
    """Scale ``schedule`` by ``min(1, (t + 1) / steps)``: a linear rise over the first steps."""
    return lambda t: schedule(t) * xp_of(t).minimum(1.0, (t + 1.0) / steps)


def from_settings(learning_rate: float, schedule: Any, steps_per_epoch: int, epochs: int) -> LearningRate:
    """The learning rate a spec's phase asks for: a float when it is constant, else a schedule
    over steps (the spec counts in epochs)."""
    kind = getattr(schedule, "kind", "constant") if schedule is not None else "constant"
    warm = getattr(schedule, "warmup_epochs", 0.0) if schedule is not None else 0.0
    if kind == "constant" and not warm:
        return learning_rate
    every = max(schedule.every_epochs * steps_per_epoch, 1e-9) if kind in ("step", "exponential") else 0.0  # read by those two only
    sched = {
        "constant": lambda: constant(learning_rate),
        "step": lambda: step_decay(learning_rate, every, schedule.gamma),
        "exponential": lambda: exponential_decay(learning_rate, every, schedule.gamma),
        "cosine": lambda: cosine_decay(learning_rate, epochs * steps_per_epoch, schedule.final),
    }[kind]()
    return warmup(sched, warm * steps_per_epoch) if warm else sched


# --------------------------------------------------------------------------- state layout
@dataclass(frozen=True)
class StateLayout:
    """How an optimiser's flat state over n parameters is laid out: ``per_parameter`` blocks of
    n entries (one per parameter), then ``scalars`` entries shared by every parameter."""

    per_parameter: int
    scalars: int

    def size(self, n: int) -> int:
        return self.per_parameter * n + self.scalars

    def split(self, state: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
        """Cut ``state`` into the states of consecutive parameter slices of ``sizes`` (each
        with its own copy of the shared scalars)."""
        k, n, bounds = self.per_parameter, sum(sizes), [0, *accumulate(sizes)]
        shared = state[k * n :]
        return [np.concatenate([state[b * n + lo : b * n + hi] for b in range(k)] + [shared]) for lo, hi in zip(bounds, bounds[1:])]

    def join(self, parts: list[np.ndarray], sizes: list[int]) -> np.ndarray:
        """The inverse of :meth:`split` (the shared scalars are the first part's)."""
        k = self.per_parameter
        return np.concatenate([p[b * m : (b + 1) * m] for b in range(k) for p, m in zip(parts, sizes)] + [parts[0][k * sizes[0] :]])


# --------------------------------------------------------------------------- optimisers
@dataclass
class SGD:
    """Minibatch SGD with classical momentum and L2 weight decay (on ``mask``ed entries).

    The returned updates are the velocity buffer itself, updated in place (no allocation per
    step): apply them before the next ``update``. With a schedule as ``learning_rate`` the
    state holds one more entry, the step count.
    """

    learning_rate: LearningRate
    momentum: float = 0.0
    weight_decay: float = 0.0
    mask: Any = None  # 1 where decay applies; None: everywhere
    # lr * grads goes here rather than into a new parameter-sized array every step
    _scratch: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def state_layout(self) -> StateLayout:
        """The velocity; with a schedule, then the step count."""
        return StateLayout(1, 1 if callable(self.learning_rate) else 0)

    def init(self, params: Any) -> Any:
        return xp_of(params).zeros(self.state_layout.size(params.shape[0]), dtype=params.dtype)

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        xp = xp_of(grads)
        if callable(self.learning_rate):
            velocity, count = state[:-1], state[-1:]
            lr = self.learning_rate(count)
            count += 1
        else:
            velocity, lr = state, self.learning_rate
        step = self._scratch
        if step is None or step.shape != velocity.shape or step.dtype != velocity.dtype or xp_of(step) is not xp:
            step = self._scratch = xp.empty_like(velocity)
        velocity *= self.momentum
        velocity -= xp.multiply(grads, lr, out=step)
        if self.weight_decay:
            decay = params if self.mask is None else xp.multiply(params, self.mask, out=step)
            velocity -= xp.multiply(decay, lr * self.weight_decay, out=step)
        return velocity, state

    def __getstate__(self) -> dict:  # the scratch buffer does not travel
        return {**self.__dict__, "_scratch": None}


@dataclass
class Adam:
    """Adam (Kingma & Ba 2015) with decoupled weight decay (AdamW, Loshchilov & Hutter 2019):

        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
        update = -lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) - lr wd p   (p masked)

    State is one flat array ``[m, v, t]``.
    """

    learning_rate: LearningRate = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    mask: Any = None

    state_layout = StateLayout(2, 1)  # m, v, then the step count t

    def init(self, params: Any) -> Any:
        return xp_of(params).zeros(self.state_layout.size(params.shape[0]), dtype=params.dtype)

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        xp = xp_of(grads)
        n = grads.shape[0]
        m, v, count = state[:n], state[n : 2 * n], state[2 * n :]
        lr = self.learning_rate(count) if callable(self.learning_rate) else self.learning_rate
        count += 1
        m *= self.beta1
        m += (1.0 - self.beta1) * grads
        v *= self.beta2
        v += (1.0 - self.beta2) * (grads * grads)
        m_hat_scale = 1.0 / (1.0 - self.beta1**count)
        v_hat_scale = 1.0 / (1.0 - self.beta2**count)
        updates = (-lr * m_hat_scale) * m / (xp.sqrt(v * v_hat_scale) + self.eps)
        if self.weight_decay:
            decay = params if self.mask is None else params * self.mask
            updates -= (lr * self.weight_decay) * decay
        return updates.astype(params.dtype, copy=False), state


def build(settings: Any, mask: Any = None, steps_per_epoch: int = 1) -> SGD | Adam:
    """The optimiser a spec's phase (``pretrain`` or ``train``) describes: ``optimizer``,
    ``learning_rate`` with its ``schedule``, ``momentum`` (sgd), ``beta1``/``beta2``/``eps``
    (adam) and ``weight_decay`` on the ``mask``ed entries."""
    lr = from_settings(settings.learning_rate, getattr(settings, "schedule", None), steps_per_epoch, settings.epochs)
    if getattr(settings, "optimizer", "sgd") == "adam":
        return Adam(lr, settings.beta1, settings.beta2, settings.eps, settings.weight_decay, mask)
    return SGD(lr, settings.momentum, settings.weight_decay, mask)


def apply_updates(params: Any, updates: Any) -> Any:
    params += updates
    return params
