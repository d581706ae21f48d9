"""Optimisers over flat parameter buffers, Optax style: ``init(params) -> state`` and
``update(grads, state, params) -> (updates, state)``; ``apply_updates`` adds in place so
module views into the buffer stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xsharp.backend import xp_of


@dataclass
class SGD:
    """Minibatch SGD with classical momentum and L2 weight decay (on ``mask``ed entries).

    The returned updates are the velocity buffer itself, updated in place (no allocation per
    step): apply them before the next ``update``.
    """

    learning_rate: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    mask: Any = None  # 1 where decay applies; None: everywhere

    def init(self, params: Any) -> Any:
        return xp_of(params).zeros_like(params)

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        velocity = state
        velocity *= self.momentum
        velocity -= self.learning_rate * grads
        if self.weight_decay:
            decay = params if self.mask is None else params * self.mask
            velocity -= (self.learning_rate * self.weight_decay) * decay
        return velocity, velocity


def apply_updates(params: Any, updates: Any) -> Any:
    params += updates
    return params
