"""Restricted Boltzmann machine with Bernoulli visible and hidden units, trained by CD-k.

In a stack it acts as a sigmoid layer p(h=1 | v) = sigmoid(v W + b_h); pretraining runs
contrastive divergence (Hinton 2002) on the layer's input.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from .activations import sigmoid
from .base import Module, Options, flat_size
from .dense import affine_backward, affine_forward


class RBMOptions(Options):
    hidden: int = Field(gt=0, description="number of hidden units")
    k: int = Field(1, ge=1, le=100, description="Gibbs steps per contrastive-divergence update (CD-k)")
    visible: Literal["bernoulli"] = Field("bernoulli", description="visible unit type")


class RBM(Module):
    kind = "rbm"
    summary = "restricted Boltzmann machine (Bernoulli units), CD-k pretraining; a sigmoid layer when stacked"
    Options = RBMOptions

    def output_shape(self, in_shape):
        return (self.options.hidden,)

    def init(self, rng, in_shape):
        visible, hidden = flat_size(in_shape), self.options.hidden
        return {
            "W": (0.01 * rng.standard_normal((visible, hidden))).astype(np.float32),
            "b_h": np.zeros(hidden, np.float32),
            "b_v": np.zeros(visible, np.float32),
        }

    def forward(self, params, x, train=False, rng=None):
        return affine_forward(x, params["W"], params["b_h"], "sigmoid")

    def backward(self, params, cache, dy):
        # b_v only shapes the generative direction; supervised fine-tuning leaves it alone.
        dW, db, dx = affine_backward(cache, dy, params["W"], "sigmoid")
        return {"W": dW, "b_h": db}, dx

    def pretrain_step(self, params, x, rng):
        W, b_h, b_v = params["W"], params["b_h"], params["b_v"]
        v0 = x.reshape(x.shape[0], -1)
        n = v0.shape[0]
        ph0 = sigmoid(v0 @ W + b_h)
        ph = ph0
        for _ in range(self.options.k):
            h = (rng.random(ph.shape, dtype=ph.dtype) < ph).astype(ph.dtype)
            pv = sigmoid(h @ W.T + b_v)  # mean-field visible reconstruction, the usual CD practice
            ph = sigmoid(pv @ W + b_h)
        grads = {
            "W": -(v0.T @ ph0 - pv.T @ ph) / n,
            "b_h": -(ph0 - ph).sum(axis=0) / n,
            "b_v": -(v0 - pv).sum(axis=0) / n,
        }
        error = float(((v0 - pv) ** 2).sum()) / n
        return grads, error
