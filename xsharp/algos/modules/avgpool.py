"""Average pooling: the mean of each size x size window, per channel.

Inputs are (C, H, W), or (H, W) treated as one channel (the output keeps the input's rank).
"""

from __future__ import annotations

from xsharp.backend import xp_of

from .maxpool import Pool
from .windows import as_images, windows


class AvgPool(Pool):
    kind = "avgpool"
    summary = "average pooling over size x size windows, per channel"

    def forward(self, params, x, train=False, rng=None):
        xp, images = xp_of(x), as_images(x)
        y = self.fold(images, lambda acc, view: xp.add(acc, view, out=acc))
        y /= self.options.size**2  # in place: the fold made its own copy
        return (y[:, 0] if x.ndim == 3 else y), (x.shape, images.shape)

    def backward(self, params, cache, dy):
        x_shape, images_shape = cache
        share = dy.reshape(images_shape[0], images_shape[1], *dy.shape[-2:]) / self.options.size**2
        dx = xp_of(dy).zeros(images_shape, dtype=dy.dtype)
        for _, _, view in windows(dx, self.options.size, self.stride):
            view += share
        return {}, dx.reshape(x_shape)
