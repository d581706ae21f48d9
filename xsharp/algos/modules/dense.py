"""Fully connected layer: y = f(x W + b)."""

from __future__ import annotations

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
        return affine_forward(x, params["W"], params["b"], self.options.activation)

    def backward(self, params, cache, dy):
        dW, db, dx = affine_backward(cache, dy, params["W"], self.options.activation)
        return {"W": dW, "b": db}, dx


def affine_forward(x, W, b, activation: str):
    """y = activation(x W + b) over flattened samples; the cache serves :func:`affine_backward`."""
    x2 = x.reshape(x.shape[0], -1)
    y = activations.apply(activation, x2 @ W + b)
    return y, (x.shape, x2, y)


def affine_backward(cache, dy, W, activation: str):
    """Gradients (dW, db, dx) of an affine layer from its cache and the output gradient."""
    shape, x2, y = cache
    dz = dy * activations.grad_from_output(activation, y)
    return x2.T @ dz, dz.sum(axis=0), (dz @ W.T).reshape(shape)
