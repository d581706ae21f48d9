"""Fully connected layer: y = f(x W + b)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from . import activations
from .base import MAX_UNITS, Module, Options, flat_size, glorot_uniform


class DenseOptions(Options):
    units: int = Field(gt=0, le=MAX_UNITS, description="number of output units")
    activation: activations.Activation = Field("relu", description="sigmoid, relu, tanh or linear")


class Dense(Module):
    kind = "dense"
    summary = "fully connected layer with an element-wise activation"
    Options = DenseOptions

    def output_shape(self, in_shape):
        return (self.options.units,)

    def param_shapes(self, in_shape):
        return {"W": (flat_size(in_shape), self.options.units), "b": (self.options.units,)}

    def init(self, rng, in_shape):
        fan_in = flat_size(in_shape)
        return {"W": glorot_uniform(rng, fan_in, self.options.units), "b": np.zeros(self.options.units, np.float32)}

    def forward(self, params, x, train=False, rng=None):
        return affine_forward(x, params["W"], params["b"], self.options.activation)

    def backward(self, params, cache, dy):
        dW, db, dx = affine_backward(cache, dy, params["W"], self.options.activation)
        return {"W": dW, "b": db}, dx

    def backward_params(self, params, cache, dy):
        dW, db, _ = affine_backward(cache, dy, params["W"], self.options.activation, need_dx=False)
        return {"W": dW, "b": db}


def affine_forward(x, W, b, activation: str):
    """y = activation(x W + b) over flattened samples; the cache serves :func:`affine_backward`.

    The bias and the activation go in place on the product: one output array, no temporaries."""
    x2 = x.reshape(x.shape[0], -1)
    z = x2 @ W
    z += b
    y = activations.apply_(activation, z)
    return y, (x.shape, x2, y)


def affine_backward(cache, dy, W, activation: str, need_dx: bool = True):
    """Gradients (dW, db, dx) of an affine layer from its cache and the output gradient
    (dx is None when not ``need_dx``: the first layer of a stack saves that product)."""
    shape, x2, y = cache
    dz = activations.backprop(activation, dy, y)
    dx = (dz @ W.T).reshape(shape) if need_dx else None
    return x2.T @ dz, dz.sum(axis=0), dx
