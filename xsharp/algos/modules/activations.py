"""Element-wise activations, and their derivatives written in terms of the output y."""

from __future__ import annotations

from typing import Any, Literal

from xsharp.backend import xp_of

Activation = Literal["sigmoid", "relu", "tanh", "linear"]


def sigmoid(z: Any) -> Any:
    # The tanh form never overflows, unlike 1 / (1 + exp(-z)) for large negative z.
    xp = xp_of(z)
    return 0.5 * (xp.tanh(0.5 * z) + 1)


def apply(name: str, z: Any) -> Any:
    if name == "sigmoid":
        return sigmoid(z)
    if name == "relu":
        return xp_of(z).maximum(z, 0)
    if name == "tanh":
        return xp_of(z).tanh(z)
    if name == "linear":
        return z
    raise ValueError(f"unknown activation {name!r}")


def grad_from_output(name: str, y: Any) -> Any:
    """d activation / dz, expressed with y = activation(z)."""
    if name == "sigmoid":
        return y * (1 - y)
    if name == "relu":
        return (y > 0).astype(y.dtype)
    if name == "tanh":
        return 1 - y * y
    if name == "linear":
        return xp_of(y).ones_like(y)
    raise ValueError(f"unknown activation {name!r}")
