"""Auto-encoder with tied weights: encode h = f(x W + b), decode r = sigmoid(h W^T + c).

Pretraining minimises the squared reconstruction error 0.5 * |r - x|^2 averaged over the batch;
with ``corruption`` > 0 the encoder sees a masked input (denoising auto-encoder, Vincent 2008)
and still reconstructs the clean one. In a stack only the encoder runs.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from . import activations
from .activations import sigmoid
from .base import Module, Options, flat_size, glorot_uniform
from .dense import affine_backward, affine_forward


class AutoEncoderOptions(Options):
    hidden: int = Field(gt=0, description="number of code units")
    activation: activations.Activation = Field("sigmoid", description="encoder activation")
    corruption: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of inputs zeroed during pretraining (denoising)")


class AutoEncoder(Module):
    kind = "autoencoder"
    summary = "tied-weight auto-encoder (optionally denoising), reconstruction pretraining; its encoder when stacked"
    Options = AutoEncoderOptions

    def output_shape(self, in_shape):
        return (self.options.hidden,)

    def init(self, rng, in_shape):
        visible, hidden = flat_size(in_shape), self.options.hidden
        return {
            "W": glorot_uniform(rng, visible, hidden),
            "b": np.zeros(hidden, np.float32),
            "c": np.zeros(visible, np.float32),
        }

    def forward(self, params, x, train=False, rng=None):
        return affine_forward(x, params["W"], params["b"], self.options.activation)

    def backward(self, params, cache, dy):
        dW, db, dx = affine_backward(cache, dy, params["W"], self.options.activation)
        return {"W": dW, "b": db}, dx

    def pretrain_step(self, params, x, rng):
        W, b, c = params["W"], params["b"], params["c"]
        act = self.options.activation
        x2 = x.reshape(x.shape[0], -1)
        n = x2.shape[0]
        xin = x2
        if self.options.corruption > 0:
            keep = rng.random(x2.shape, dtype=x2.dtype) >= self.options.corruption
            xin = x2 * keep
        h = activations.apply(act, xin @ W + b)
        r = sigmoid(h @ W.T + c)
        diff = r - x2
        dzr = diff * r * (1 - r) / n
        dzh = (dzr @ W) * activations.grad_from_output(act, h)
        grads = {"W": xin.T @ dzh + dzr.T @ h, "b": dzh.sum(axis=0), "c": dzr.sum(axis=0)}
        return grads, 0.5 * float((diff * diff).sum()) / n
