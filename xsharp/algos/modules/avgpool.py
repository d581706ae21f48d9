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
        images = as_images(x)
        total = None
        for _, _, view in windows(images, self.options.size, self.stride):
            if total is None:
                total = view.copy(order="K")  # keeps the input's memory layout (channels-last after conv2d)
            else:
                total += view
        y = total
        y /= self.options.size**2  # in place: total is ours
        return (y[:, 0] if x.ndim == 3 else y), (x.shape, images.shape)

    def backward(self, params, cache, dy):
        x_shape, images_shape = cache
        share = dy.reshape(images_shape[0], images_shape[1], *dy.shape[-2:]) / self.options.size**2
        dx = xp_of(dy).zeros(images_shape, dtype=dy.dtype)
        for _, _, view in windows(dx, self.options.size, self.stride):
            view += share
        return {}, dx.reshape(x_shape)
