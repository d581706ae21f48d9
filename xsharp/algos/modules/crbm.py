"""Convolutional RBM (Lee et al. 2009): Bernoulli visible images (C, H, W), Bernoulli hidden
feature maps (filters, OH, OW) sharing one kernel per map, trained by CD-k.

    p(h = 1 | v) = sigmoid(W * v + b_h)          (the convolution of :mod:`.conv2d`)
    p(v = 1 | h) = sigmoid(W^T * h + b_v)        (its adjoint, a transposed convolution)

A 2-D (H, W) input is one channel. In a stack it acts as a sigmoid convolution layer.
CD gradients are averaged over hidden positions (for W and b_h) and visible pixels (for b_v)
as well as over the batch, so learning rates that suit a dense RBM suit a CRBM too.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from .activations import sigmoid
from .base import MAX_UNITS, Module, Options
from .conv2d import conv_backward_hwc, conv_forward_hwc, conv_transpose_hwc
from .windows import as_images, image_shape, window_grid


class CRBMOptions(Options):
    filters: int = Field(gt=0, le=MAX_UNITS, description="number of hidden feature maps")
    kernel: int = Field(3, gt=0, le=64, description="side of the square filters, in pixels")
    stride: int = Field(1, gt=0, le=64, description="step between windows, in pixels")
    k: int = Field(1, ge=1, le=100, description="Gibbs steps per contrastive-divergence update (CD-k)")


class CRBM(Module):
    kind = "crbm"
    summary = "convolutional RBM (Bernoulli units, shared filters), CD-k pretraining; a sigmoid convolution when stacked"
    Options = CRBMOptions

    def output_shape(self, in_shape):
        o = self.options
        return (o.filters, *window_grid(self.kind, in_shape, o.kernel, o.stride))

    def param_shapes(self, in_shape):
        o = self.options
        channels = image_shape(self.kind, in_shape)[0]
        return {"W": (o.filters, channels, o.kernel, o.kernel), "b_h": (o.filters,), "b_v": (channels,)}

    def init(self, rng, in_shape):
        o = self.options
        channels = image_shape(self.kind, in_shape)[0]
        return {
            "W": (0.01 * rng.standard_normal((o.filters, channels, o.kernel, o.kernel))).astype(np.float32),
            "b_h": np.zeros(o.filters, np.float32),
            "b_v": np.zeros(channels, np.float32),
        }

    def forward(self, params, x, train=False, rng=None):
        z, cache = conv_forward_hwc(x, params["W"], params["b_h"], self.options.stride, 0)
        y = sigmoid(z)
        return y, (cache, y)

    def backward(self, params, cache, dy):
        conv_cache, y = cache
        dW, db, dx = conv_backward_hwc(conv_cache, dy * y * (1 - y), params["W"])
        return {"W": dW, "b_h": db}, dx  # b_v only shapes the generative direction

    def pretrain_step(self, params, x, rng):
        W, b_h, b_v = params["W"], params["b_h"], params["b_v"]
        stride, (f, c, k, _) = self.options.stride, W.shape
        v0 = as_images(x)
        z0, (_, images_shape, cols0, _, _) = conv_forward_hwc(v0, W, b_h, stride, 0)
        ph0 = sigmoid(z0)
        ph, cols = ph0, cols0
        for _ in range(self.options.k):
            h = (rng.random(ph.shape, dtype=ph.dtype) < ph).astype(ph.dtype)
            pv = sigmoid(conv_transpose_hwc(h, W, images_shape, stride, 0) + b_v[:, None, None])  # mean-field reconstruction
            z, (_, _, cols, _, _) = conv_forward_hwc(pv, W, b_h, stride, 0)
            ph = sigmoid(z)
        n, positions, pixels = v0.shape[0], ph0.shape[2] * ph0.shape[3], v0.shape[2] * v0.shape[3]

        def stats(p, cols):  # sum over samples and positions of h_position * window_position, (F, i, j, c)
            return p.transpose(0, 2, 3, 1).reshape(-1, f).T @ cols

        grads = {
            "W": (-(stats(ph0, cols0) - stats(ph, cols)) / (n * positions)).reshape(f, k, k, c).transpose(0, 3, 1, 2),
            "b_h": -(ph0 - ph).sum(axis=(0, 2, 3)) / (n * positions),
            "b_v": -(v0 - pv).sum(axis=(0, 2, 3)) / (n * pixels),
        }
        return grads, float(((v0 - pv) ** 2).sum()) / n
