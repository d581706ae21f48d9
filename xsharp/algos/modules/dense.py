"""Fully connected layer: y = f(x W + b)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from . import activations
from .base import Module, Options, flat_size, glorot_uniform


class DenseOptions(Options):
    units: int = Field(gt=0, description="number of output units")
    activation: activations.Activation = Field("relu", description="sigmoid, relu, tanh or linear")


class Dense(Module):
    kind = "dense"
    summary = "fully connected layer with an element-wise activation"
    Options = DenseOptions

    def output_shape(self, in_shape):
        return (self.options.units,)

    def init(self, rng, in_shape):
        fan_in = flat_size(in_shape)
        return {"W": glorot_uniform(rng, fan_in, self.options.units), "b": np.zeros(self.options.units, np.float32)}

    def forward(self, params, x, train=False, rng=None):
        x2 = x.reshape(x.shape[0], -1)
        y = activations.apply(self.options.activation, x2 @ params["W"] + params["b"])
        return y, (x.shape, x2, y)

    def backward(self, params, cache, dy):
        shape, x2, y = cache
        dz = dy * activations.grad_from_output(self.options.activation, y)
        grads = {"W": x2.T @ dz, "b": dz.sum(axis=0)}
        return grads, (dz @ params["W"].T).reshape(shape)
