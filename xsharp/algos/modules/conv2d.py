"""2-D convolution: y = f(W * x + b), computed as im2col + one GEMM.

Inputs are images (C, H, W); a 2-D (H, W) input is one channel. Filters W have shape
(filters, C, kernel, kernel); the output is (filters, OH, OW). Like every deep-learning
"convolution" this is a cross-correlation (the kernel is not flipped).

The layer computes channels-last inside (:func:`conv_forward_hwc`): the GEMM's output is
(n, OH, OW, F) in memory, handed on as an (n, F, OH, OW) view, so the next layer (pooling,
another convolution) reads it without a transposing copy, and gradients coming back in the
same layout cost none either. The convolutional RBM uses the same functions.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from . import activations
from .base import MAX_UNITS, Module, Options
from .windows import as_images, channels_last, col2im_hwc, im2col_hwc, image_shape, out_size, window_grid


class Conv2DOptions(Options):
    filters: int = Field(gt=0, le=MAX_UNITS, description="number of output channels (feature maps)")
    kernel: int = Field(3, gt=0, le=64, description="side of the square kernel, in pixels")
    stride: int = Field(1, gt=0, le=64, description="step between windows, in pixels")
    padding: int = Field(0, ge=0, le=64, description="zeros added on every side of the input")
    activation: activations.Activation = Field("relu", description="sigmoid, relu, tanh or linear")


class Conv2D(Module):
    kind = "conv2d"
    summary = "2-D convolution (stride, padding) with an element-wise activation; im2col + GEMM"
    Options = Conv2DOptions

    def output_shape(self, in_shape):
        o = self.options
        return (o.filters, *window_grid(self.kind, in_shape, o.kernel, o.stride, o.padding))

    def param_shapes(self, in_shape):
        o = self.options
        channels = image_shape(self.kind, in_shape)[0]
        return {"W": (o.filters, channels, o.kernel, o.kernel), "b": (o.filters,)}

    def init(self, rng, in_shape):
        o = self.options
        channels = image_shape(self.kind, in_shape)[0]
        fan_in, fan_out = channels * o.kernel**2, o.filters * o.kernel**2
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        W = rng.uniform(-limit, limit, size=(o.filters, channels, o.kernel, o.kernel)).astype(np.float32)
        return {"W": W, "b": np.zeros(o.filters, np.float32)}

    def forward(self, params, x, train=False, rng=None):
        o = self.options
        z, cache = conv_forward_hwc(x, params["W"], params["b"], o.stride, o.padding)
        y = activations.apply_(o.activation, z)  # z is a fresh array: in place
        return y, (cache, y)

    def backward(self, params, cache, dy):
        conv_cache, y = cache
        dz = activations.backprop(self.options.activation, dy, y)
        dW, db, dx = conv_backward_hwc(conv_cache, dz, params["W"])
        return {"W": dW, "b": db}, dx

    def backward_params(self, params, cache, dy):
        conv_cache, y = cache
        dz = activations.backprop(self.options.activation, dy, y)
        dW, db, _ = conv_backward_hwc(conv_cache, dz, params["W"], need_dx=False)
        return {"W": dW, "b": db}


def conv_forward_hwc(x, W, b, stride: int, padding: int):
    """Pre-activations (n, F, OH, OW) of ``W * x + b``, whose memory is (n, OH, OW, F); the
    cache (its columns in (i, j, c) order) serves :func:`conv_backward_hwc`."""
    n = x.shape[0]
    images = channels_last(as_images(x))
    f, _, k, _ = W.shape
    cols = im2col_hwc(images, k, stride, padding)
    z = cols @ W.transpose(0, 2, 3, 1).reshape(f, -1).T  # the filters in the columns' (i, j, c) order
    z += b
    _, h, w, _ = images.shape
    z = z.reshape(n, out_size(h, k, stride, padding), out_size(w, k, stride, padding), f).transpose(0, 3, 1, 2)
    return z, (x.shape, images.shape, cols, stride, padding)


def conv_backward_hwc(cache, dz, W, need_dx: bool = True):
    """(dW, db, dx) from the cache of :func:`conv_forward_hwc` (dx None unless ``need_dx``)."""
    x_shape, images_shape, cols, stride, padding = cache
    f, c, k, _ = W.shape
    dz2 = dz.transpose(0, 2, 3, 1).reshape(-1, f)  # no copy when dz is channels-last in memory
    dW = filter_grad(cols, dz2).reshape(f, k, k, c).transpose(0, 3, 1, 2)
    if not need_dx:
        return dW, dz2.sum(axis=0), None
    dcols = dz2 @ W.transpose(0, 2, 3, 1).reshape(f, -1)
    dx = col2im_hwc(dcols, images_shape, k, stride, padding).transpose(0, 3, 1, 2)
    return dW, dz2.sum(axis=0), dx.reshape(x_shape)


def filter_grad(cols, dz2):
    """dz2^T cols, the filters' gradient (F, columns), computed as (cols^T dz2)^T: the same
    product, which OpenBLAS splits better over threads (about 1.3x at 2 threads, equal at 1)."""
    return (cols.T @ dz2).T


def conv_transpose_hwc(h, W, images_shape, stride: int, padding: int):
    """The adjoint of the convolution (no bias): (n, F, OH, OW) back onto (n, C, H, W), returned
    as a view of channels-last memory, as :func:`conv_forward_hwc` returns its output.
    ``images_shape`` is the channels-last (n, H, W, C) shape of the convolution's input."""
    f = W.shape[0]
    cols = h.transpose(0, 2, 3, 1).reshape(-1, f) @ W.transpose(0, 2, 3, 1).reshape(f, -1)
    return col2im_hwc(cols, images_shape, W.shape[2], stride, padding).transpose(0, 3, 1, 2)
