"""Batch normalisation (Ioffe & Szegedy 2015): y = gamma * (x - mean) / sqrt(var + eps) + beta.

Statistics are per feature for 1-D inputs (D,) and per channel for images (C, H, W), taken over
the batch and the pixels; a 2-D (H, W) input is one channel. Training normalises with the
batch's statistics; evaluation with running averages of them.

The running averages ``running_mean`` and ``running_var`` are entries of the parameter dict
(so they live in the flat buffer and travel with checkpoints and saved models), but they are
not trained: their gradient is always zero and forward(train=True) updates them in place,
``running = (1 - momentum) * running + momentum * batch_statistic``. In data-parallel training
each worker updates its copy from its own shard of the batch; the copies stay close but are
not averaged, and the saved model carries rank 0's.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from xsharp.backend import xp_of

from .base import Module, Options


class BatchNormOptions(Options):
    momentum: float = Field(0.1, gt=0.0, le=1.0, description="weight of each training batch in the running mean and variance")
    eps: float = Field(1e-5, gt=0.0, le=1.0, description="added to the variance before the square root")


def _channels(kind: str, in_shape: tuple[int, ...]) -> int:
    if len(in_shape) == 1:
        return in_shape[0]
    if len(in_shape) == 2:
        return 1
    if len(in_shape) == 3:
        return in_shape[0]
    raise ValueError(f"{kind} needs inputs (D,), (H, W) or (C, H, W), got shape {tuple(in_shape)}")


class BatchNorm(Module):
    kind = "batchnorm"
    summary = "batch normalisation per feature (or per channel of images), with running statistics for evaluation"
    Options = BatchNormOptions
    non_trainable: ClassVar[tuple[str, ...]] = ("running_mean", "running_var")  # gradient always zero

    def output_shape(self, in_shape):
        _channels(self.kind, in_shape)
        return tuple(in_shape)

    def param_shapes(self, in_shape):
        c = _channels(self.kind, in_shape)
        return {"gamma": (c,), "beta": (c,), "running_mean": (c,), "running_var": (c,)}

    def init(self, rng, in_shape):
        c = _channels(self.kind, in_shape)
        return {
            "gamma": np.ones(c, np.float32),
            "beta": np.zeros(c, np.float32),
            "running_mean": np.zeros(c, np.float32),
            "running_var": np.ones(c, np.float32),
        }

    def forward(self, params, x, train=False, rng=None):
        xp = xp_of(x)
        c = params["gamma"].shape[0]
        xr = x.reshape(x.shape[0], c, -1)  # (n, C, pixels); pixels is 1 for 1-D inputs
        if train:
            mean = xr.mean(axis=(0, 2))
            var = xr.var(axis=(0, 2))
            count = xr.shape[0] * xr.shape[2]
            m = self.options.momentum
            params["running_mean"][...] = (1 - m) * params["running_mean"] + m * mean
            params["running_var"][...] = (1 - m) * params["running_var"] + m * var * (count / max(count - 1, 1))
        else:
            mean, var = params["running_mean"], params["running_var"]
        inv_std = 1 / xp.sqrt(var + self.options.eps)
        xhat = (xr - mean[:, None]) * inv_std[:, None]
        y = params["gamma"][:, None] * xhat + params["beta"][:, None]
        return y.reshape(x.shape), (x.shape, xhat, inv_std, train)

    def backward(self, params, cache, dy):
        x_shape, xhat, inv_std, train = cache
        xp = xp_of(dy)
        gamma = params["gamma"]
        dyr = dy.reshape(xhat.shape)
        dgamma = (dyr * xhat).sum(axis=(0, 2))
        dbeta = dyr.sum(axis=(0, 2))
        dxhat = dyr * gamma[:, None]
        if train:  # the batch statistics depend on x too
            count = xhat.shape[0] * xhat.shape[2]
            dxhat = dxhat - dxhat.sum(axis=(0, 2))[:, None] / count - xhat * (dxhat * xhat).sum(axis=(0, 2))[:, None] / count
        dx = dxhat * inv_std[:, None]
        zeros = xp.zeros_like(gamma)
        grads = {"gamma": dgamma, "beta": dbeta, "running_mean": zeros, "running_var": zeros}
        return grads, dx.reshape(x_shape)
