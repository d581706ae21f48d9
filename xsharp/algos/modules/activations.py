"""Element-wise activations, and their derivatives written in terms of the output y.

``apply`` returns a new array; ``apply_`` overwrites a pre-activation the caller owns (a fresh
``x @ W``), which saves an allocation and a pass over memory per layer and step. ``backprop``
is ``dy * grad_from_output(y)`` without the intermediate derivative array. Each does the same
floating-point operations in the same order as the plain form, so results are bitwise equal.
"""

from __future__ import annotations

from typing import Any, Literal

from xsharp.backend import xp_of

Activation = Literal["sigmoid", "relu", "tanh", "linear"]


def sigmoid(z: Any) -> Any:
    # The tanh form never overflows, unlike 1 / (1 + exp(-z)) for large negative z.
    xp = xp_of(z)
    return 0.5 * (xp.tanh(0.5 * z) + 1)


def sigmoid_(z: Any) -> Any:
    """:func:`sigmoid` in place: ``z`` becomes 0.5 (tanh(0.5 z) + 1)."""
    xp = xp_of(z)
    z *= 0.5
    xp.tanh(z, out=z)
    z += 1
    z *= 0.5
    return z


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


def apply_(name: str, z: Any) -> Any:
    """:func:`apply` overwriting ``z`` (which the caller owns); returns it."""
    if name == "sigmoid":
        return sigmoid_(z)
    if name == "relu":
        return xp_of(z).maximum(z, 0, out=z)
    if name == "tanh":
        return xp_of(z).tanh(z, out=z)
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


def backprop(name: str, dy: Any, y: Any) -> Any:
    """``dy * grad_from_output(name, y)``, the gradient at the pre-activation, as a new array
    (``linear``: ``dy`` itself; callers never write into it)."""
    xp = xp_of(y)
    if name == "relu":
        return xp.multiply(dy, y > 0)  # the mask is cast to 1.0 / 0.0, as astype would
    if name == "linear":
        return dy
    if name == "sigmoid":
        g = 1 - y
        g *= y
    elif name == "tanh":
        g = y * y
        xp.subtract(1, g, out=g)
    else:
        raise ValueError(f"unknown activation {name!r}")
    xp.multiply(dy, g, out=g)
    return g
