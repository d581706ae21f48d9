"""Extreme learning machines: a random hidden layer that is never trained, and a linear readout
solved in closed form by ridge regression (Huang et al. 2006).

    H    = g(x W + b)                                  W, b drawn once at init, then fixed
    beta = (H^T H + ridge * I)^-1 H^T T                over all training rows

``elm`` outputs ``H beta``: its targets T are the one-hot labels of the training rows, so its
outputs are class scores. Its place is before the softmax head (``elm -> softmax``), which then
only has to turn scores into probabilities; placed lower in a stack it is a supervised layer
of class scores.

``elm_ae`` is the ELM auto-encoder of Kasun et al. (2013): T is the layer's own input, so beta
(hidden x inputs) learns to reconstruct x from the random features H, and the layer outputs
``g_out(x beta^T)``, the input projected on the rows of beta. Stacked, these make the
multi-layer ELM (a "stacked ELM-AE"); the random weights are orthogonal by default (W^T W = I,
|b| = 1, as in the paper).

Training: a ridge readout needs only the sums H^T H and H^T T over the rows, so the training
loop runs a *solve* phase for the layer in its greedy order (see ``algos.training``): one pass
over the layer's training rows in batches of ``solve_batch``, adding each batch's sums (summed
over data-parallel workers by the same allreduce as gradients), then one solve. The statistics
are one flat array, so they allreduce, checkpoint and resume as an optimiser state does.

Fine-tuning: W and b stay as drawn (``non_trainable``: zero gradient, no weight decay). By
default beta stays as solved too, and no gradient passes to the layers below: beta is the
solution for the features those layers give now, and moving them would void it (examples/
digits-conv-elm.yaml scores 98 % with its random filters kept, 87 % when fine-tuning moves them
under the fixed beta). So there fine-tuning trains the softmax head alone. With
``finetune: true`` backward is the exact gradient: fine-tuning descends beta and the layers
below. Mind the learning rate then: beta solved over many correlated random features is large
and the curvature along it high (the largest eigenvalue of H^T H / n grows with ``hidden``), so
a rate that suits a softmax head can throw beta off.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from xsharp.backend import xp_of

from . import activations
from .base import MAX_UNITS, Module, Options, flat_size


class RidgeOptions(Options):
    hidden: int = Field(gt=0, le=MAX_UNITS, description="random hidden units")
    scale: float = Field(1.0, gt=0.0, le=1000.0, description="spread of the random weights: variance scale^2 / inputs (elm_ae orthogonal: norm scale)")
    ridge: float = Field(1.0, gt=0.0, le=1e9, description="L2 penalty of the readout: beta = (H^T H + ridge I)^-1 H^T T, sums over the training rows")
    solve_batch: int = Field(1024, gt=0, le=1_000_000, description="rows per accumulation step of the solve (fewer, larger steps: fewer allreduces)")
    finetune: bool = Field(False, description="fine-tuning descends beta and, through this layer, the layers below; false: they keep what beta was solved on")


class ELMOptions(RidgeOptions):
    activation: activations.Activation = Field("tanh", description="activation of the random hidden layer: sigmoid, relu, tanh or linear")
    outputs: int | None = Field(None, gt=0, le=MAX_UNITS, description="one output per class; default: taken from the data")


class ELMAEOptions(RidgeOptions):
    activation: activations.Activation = Field("sigmoid", description="activation of the random hidden layer: sigmoid, relu, tanh or linear")
    output_activation: activations.Activation = Field("linear", description="activation of the layer's output g(x beta^T)")
    orthogonal: bool = Field(True, description="true: orthogonal random weights and a unit-norm bias (Kasun et al.); false: uniform as in elm")


def orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A (rows, cols) matrix with orthonormal columns (rows >= cols) or orthonormal rows."""
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q * np.sign(np.diag(r))  # a unique (Haar-distributed) Q
    return q if rows >= cols else q.T


def one_hot(labels: Any, classes: int, dtype: Any) -> Any:
    xp = xp_of(labels)
    n = labels.shape[0]
    if n and int(labels.max()) >= classes:
        raise ValueError(f"elm.outputs: {classes} outputs cannot stand for label {int(labels.max())}; leave outputs out to take it from the data")
    t = xp.zeros((n, classes), dtype=dtype)
    t[xp.arange(n), labels] = 1
    return t


class RidgeReadout(Module):
    """What the ELM modules share: the random hidden layer and the closed-form readout.

    ``statistics`` and ``solve`` are the solve phase's side of the Module interface:

        statistics(params, x, labels) -> flat sums over the rows [H^T H, H^T T, sum T^2, rows]
        solve(params, stats)          -> ({"beta": ...}, mean of 0.5 |H beta - T|^2 per row)
    """

    @property
    def non_trainable(self) -> tuple[str, ...]:
        """W and b are drawn at init and never trained; beta is solved, and descended only on request."""
        return ("W", "b") if self.options.finetune else ("W", "b", "beta")

    def outputs(self, in_shape: tuple[int, ...]) -> int:
        """Columns of T."""
        raise NotImplementedError

    def targets(self, x2: Any, labels: Any) -> Any:
        raise NotImplementedError

    def random_weights(self, rng: np.random.Generator, fan_in: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniform weights of variance scale^2 / fan_in (x W has variance scale^2 for inputs of unit
        mean square), biases uniform in [-scale / 2, scale / 2]."""
        s, h = self.options.scale, self.options.hidden
        W = rng.uniform(-1.0, 1.0, size=(fan_in, h)) * (s * np.sqrt(3.0 / fan_in))
        b = rng.uniform(-0.5, 0.5, size=h) * s
        return W.astype(np.float32), b.astype(np.float32)

    def param_shapes(self, in_shape):
        h = self.options.hidden
        return {"W": (flat_size(in_shape), h), "b": (h,), "beta": (h, self.outputs(in_shape))}

    def init(self, rng, in_shape):
        W, b = self.random_weights(rng, flat_size(in_shape))
        return {"W": W, "b": b, "beta": np.zeros((self.options.hidden, self.outputs(in_shape)), np.float32)}

    def hidden(self, params: dict, x2: Any) -> Any:
        z = x2 @ params["W"]
        z += params["b"]
        return activations.apply_(self.options.activation, z)  # z is ours: activated in place

    def statistics_size(self, params: dict) -> int:
        h, o = params["beta"].shape
        return h * h + h * o + 2

    def statistics(self, params: dict, x: Any, labels: Any) -> Any:
        """The sums a ridge solve needs, over these rows, as one flat array (they add up over
        batches and workers)."""
        xp = xp_of(x)
        x2 = x.reshape(x.shape[0], -1)
        H, T = self.hidden(params, x2), self.targets(x2, labels)
        tail = xp.asarray([float((T * T).sum()), x2.shape[0]], dtype=H.dtype)
        return xp.concatenate([(H.T @ H).reshape(-1), (H.T @ T).reshape(-1), tail])

    def solve(self, params: dict, stats: Any) -> tuple[dict, float]:
        """beta from summed statistics, in float64; the residual is the mean over the rows of
        0.5 |H beta - T|^2, read off the same sums."""
        xp = xp_of(stats)
        h, o = params["beta"].shape
        s = stats.astype(xp.float64)
        hh, ht = s[: h * h].reshape(h, h), s[h * h : h * h + h * o].reshape(h, o)
        tt, rows = float(s[-2]), float(s[-1])
        if rows <= 0:
            raise ValueError(f"{self.kind}: no training rows to solve the readout from")
        beta = xp.linalg.solve(hh + self.options.ridge * xp.eye(h, dtype=xp.float64), ht)
        sse = tt - 2.0 * float((beta * ht).sum()) + float((beta * (hh @ beta)).sum())
        return {"beta": beta.astype(params["beta"].dtype)}, 0.5 * max(sse, 0.0) / rows


class ELM(RidgeReadout):
    kind = "elm"
    summary = "extreme learning machine: random hidden layer, readout to class scores solved in closed form (ridge); before softmax"
    Options = ELMOptions

    def outputs(self, in_shape):
        if self.options.outputs is None:
            raise ValueError("elm.outputs is not set: pass the number of classes")
        return self.options.outputs

    def output_shape(self, in_shape):
        return (self.outputs(in_shape),)

    def targets(self, x2, labels):
        return one_hot(labels, self.options.outputs, x2.dtype)

    def forward(self, params, x, train=False, rng=None):
        x2 = x.reshape(x.shape[0], -1)
        H = self.hidden(params, x2)
        return H @ params["beta"], (x.shape, H)

    def backward(self, params, cache, dy):
        shape, H = cache
        if not self.options.finetune:
            return {}, xp_of(dy).zeros(shape, dtype=dy.dtype)
        dz = activations.backprop(self.options.activation, dy @ params["beta"].T, H)
        return {"beta": H.T @ dy}, (dz @ params["W"].T).reshape(shape)


class ELMAutoEncoder(RidgeReadout):
    kind = "elm_ae"
    summary = "ELM auto-encoder (Kasun et al.): random features, ridge-solved reconstruction beta; outputs g(x beta^T); stacks into a multi-layer ELM"
    Options = ELMAEOptions

    def outputs(self, in_shape):
        return flat_size(in_shape)

    def output_shape(self, in_shape):
        return (self.options.hidden,)

    def random_weights(self, rng, fan_in):
        if not self.options.orthogonal:
            return super().random_weights(rng, fan_in)
        s, h = self.options.scale, self.options.hidden
        b = rng.standard_normal(h)
        return (s * orthogonal(rng, fan_in, h)).astype(np.float32), (s * b / np.linalg.norm(b)).astype(np.float32)

    def targets(self, x2, labels):
        return x2

    def forward(self, params, x, train=False, rng=None):
        x2 = x.reshape(x.shape[0], -1)
        y = activations.apply_(self.options.output_activation, x2 @ params["beta"].T)
        return y, (x.shape, x2, y)

    def backward(self, params, cache, dy):
        shape, x2, y = cache
        if not self.options.finetune:
            return {}, xp_of(dy).zeros(shape, dtype=dy.dtype)
        dz = activations.backprop(self.options.output_activation, dy, y)
        return {"beta": dz.T @ x2}, (dz @ params["beta"]).reshape(shape)
