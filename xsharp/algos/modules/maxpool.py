"""Max pooling: the largest value in each size x size window, per channel.

Inputs are (C, H, W), or (H, W) treated as one channel (the output keeps the input's rank).
The gradient flows to the first maximum of each window only.
"""

from __future__ import annotations

from pydantic import Field

from xsharp.backend import xp_of

from .base import Module, Options
from .windows import as_images, window_grid, windows


class PoolOptions(Options):
    size: int = Field(2, gt=0, le=64, description="side of the square pooling window, in pixels")
    stride: int | None = Field(None, gt=0, le=64, description="step between windows; default: size (windows do not overlap)")


def pooled_shape(kind: str, in_shape: tuple[int, ...], size: int, stride: int) -> tuple[int, ...]:
    oh, ow = window_grid(kind, in_shape, size, stride)
    return (oh, ow) if len(in_shape) == 2 else (in_shape[0], oh, ow)


class Pool(Module):
    """What max and average pooling share: options, window grid, no parameters."""

    Options = PoolOptions

    @property
    def stride(self) -> int:
        return self.options.stride or self.options.size

    def output_shape(self, in_shape):
        return pooled_shape(self.kind, in_shape, self.options.size, self.stride)

    def param_shapes(self, in_shape):
        self.output_shape(in_shape)  # refuse a window that does not fit, as init does
        return {}

    def init(self, rng, in_shape):
        self.output_shape(in_shape)  # refuse a window that does not fit, at build time
        return {}

    def fold(self, images, combine):
        """The windows folded into one array by ``combine(acc, view)`` (in place), starting from a
        copy of the first that keeps the input's memory layout (channels-last after conv2d)."""
        acc = None
        for _, _, view in windows(images, self.options.size, self.stride):
            if acc is None:
                acc = view.copy(order="K")
            else:
                combine(acc, view)
        return acc


class MaxPool(Pool):
    kind = "maxpool"
    summary = "max pooling over size x size windows, per channel"

    def forward(self, params, x, train=False, rng=None):
        xp = xp_of(x)
        images = as_images(x)
        best = self.fold(images, lambda acc, view: xp.maximum(acc, view, out=acc))
        # which offset won is found again in backward: tracking it here costs more than the max
        return (best[:, 0] if x.ndim == 3 else best), (x.shape, images, best)

    def backward(self, params, cache, dy):
        x_shape, images, best = cache
        xp = xp_of(dy)
        left = xp.empty_like(best)  # the gradient no offset has taken yet, laid out like the windows
        left[...] = dy.reshape(best.shape)
        dx = xp.zeros_like(images)  # same memory layout as the input, so conv2d's backward reads it as it is
        disjoint = self.stride >= self.options.size  # each pixel in one window at most
        offsets = list(zip(windows(images, self.options.size, self.stride), windows(dx, self.options.size, self.stride)))
        for o, ((_, _, view), (_, _, grad)) in enumerate(offsets):
            # the first maximum of each window takes the gradient: it leaves none for later ties
            if disjoint:
                taken = xp.multiply(view == best, left, out=grad)
            else:
                taken = (view == best) * left
                grad += taken
            if o < len(offsets) - 1:
                left -= taken
        return {}, dx.reshape(x_shape)
