"""Classifier head: an affine layer followed by log-softmax.

It outputs log-probabilities, so the loss is the negative log-likelihood and the gradient
through both is the stable (p - onehot) / n, with no division by a small probability.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from xsharp.backend import xp_of

from .base import MAX_UNITS, Module, Options, flat_size, glorot_uniform


class SoftmaxOptions(Options):
    units: int | None = Field(None, gt=0, le=MAX_UNITS, description="number of classes; default: taken from the data")


def log_softmax(z: Any) -> Any:
    xp = xp_of(z)
    z = z - z.max(axis=1, keepdims=True)
    return z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))


class Softmax(Module):
    kind = "softmax"
    summary = "affine layer + softmax over classes (cross-entropy loss); the last module of a classifier"
    Options = SoftmaxOptions

    def output_shape(self, in_shape):
        if self.options.units is None:
            raise ValueError("softmax.units is not set: pass the number of classes")
        return (self.options.units,)

    def param_shapes(self, in_shape):
        units = self.output_shape(in_shape)[0]
        return {"W": (flat_size(in_shape), units), "b": (units,)}

    def init(self, rng, in_shape):
        units = self.output_shape(in_shape)[0]
        return {"W": glorot_uniform(rng, flat_size(in_shape), units), "b": np.zeros(units, np.float32)}

    def forward(self, params, x, train=False, rng=None):
        x2 = x.reshape(x.shape[0], -1)
        z = x2 @ params["W"]
        z += params["b"]
        logp = log_softmax(z)
        return logp, (x.shape, x2, logp)

    def backward(self, params, cache, dy):
        grads, dz = self._grads(cache, dy)
        return grads, (dz @ params["W"].T).reshape(cache[0])

    def backward_params(self, params, cache, dy):
        return self._grads(cache, dy)[0]

    @staticmethod
    def _grads(cache, dy):
        _, x2, logp = cache
        xp = xp_of(logp)
        dz = dy - xp.exp(logp) * dy.sum(axis=1, keepdims=True)
        return {"W": x2.T @ dz, "b": dz.sum(axis=0)}, dz


def nll_loss(logp: Any, labels: Any) -> tuple[Any, Any]:
    """Mean negative log-likelihood of integer labels, and its gradient w.r.t. logp. The loss is
    a 0-d array on logp's device: on a GPU, reading it (``float``) waits for the step, so the
    training loop reads it once a step together with the stop flag, not here."""
    xp = xp_of(logp)
    n = logp.shape[0]
    rows = xp.arange(n)
    loss = -logp[rows, labels].sum() / n
    dlogp = xp.zeros_like(logp)
    dlogp[rows, labels] = -1.0 / n
    return loss, dlogp
