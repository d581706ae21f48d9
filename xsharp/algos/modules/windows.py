"""Sliding windows over images: im2col / col2im for convolution, window views for pooling.

Images are batches (n, C, H, W). A window of ``kernel`` x ``kernel`` moves by ``stride`` over the
input padded with ``padding`` zeros on every side. im2col is one copy of a strided view; each
loop below runs over the kernel offsets (9 or 25 of them), never over pixels or samples, so the
work is a few large array copies on NumPy and CuPy alike.

Convolution works on channels-last images (n, H, W, C) with columns in (i, j, c) order: a
window's row of C channels is then one contiguous run in memory, on both the gather and the
scatter side, several times faster than (c, i, j) columns over (n, C, H, W) when C > 1.
"""

from __future__ import annotations

from typing import Any

from xsharp.backend import xp_of


def out_size(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Windows along one axis: ``(size + 2 padding - kernel) // stride + 1`` (0 or less: none fit)."""
    return (size + 2 * padding - kernel) // stride + 1


def image_shape(kind: str, in_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of a sample; a 2-D (H, W) sample is one channel."""
    if len(in_shape) == 2:
        return (1, *in_shape)
    if len(in_shape) == 3:
        return tuple(in_shape)
    raise ValueError(f"{kind} needs image inputs (C, H, W) or (H, W), got shape {tuple(in_shape)}")


def window_grid(kind: str, in_shape: tuple[int, ...], kernel: int, stride: int, padding: int = 0) -> tuple[int, int]:
    """(OH, OW) for a sample of ``in_shape``, or a ValueError saying why no window fits."""
    _, h, w = image_shape(kind, in_shape)
    oh, ow = out_size(h, kernel, stride, padding), out_size(w, kernel, stride, padding)
    if oh < 1 or ow < 1:
        raise ValueError(f"{kind}: a {kernel}x{kernel} window does not fit a {h}x{w} input with padding {padding}")
    return oh, ow


def as_images(x: Any) -> Any:
    """(n, H, W) -> (n, 1, H, W); (n, C, H, W) unchanged."""
    return x[:, None] if x.ndim == 3 else x


def channels_last(images: Any) -> Any:
    """(n, C, H, W) -> contiguous (n, H, W, C); free when the memory is channels-last already
    (the outputs of conv2d and of pooling over them are)."""
    return xp_of(images).ascontiguousarray(images.transpose(0, 2, 3, 1))


def im2col_hwc(x: Any, kernel: int, stride: int, padding: int) -> Any:
    """Channels-last (n, H, W, C) -> (n * OH * OW, kernel * kernel * C): one row per window, in
    (n, oh, ow) order; columns in (i, j, c) order, matching ``W.transpose(0, 2, 3, 1)``."""
    xp = xp_of(x)
    n, h, w, c = x.shape
    oh, ow = out_size(h, kernel, stride, padding), out_size(w, kernel, stride, padding)
    if padding:
        x = xp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    sn, sh, sw, sc = x.strides
    view = xp.lib.stride_tricks.as_strided(x, (n, oh, ow, kernel, kernel, c), (sn, sh * stride, sw * stride, sh, sw, sc))
    return view.reshape(n * oh * ow, kernel * kernel * c)  # the one copy


def col2im_hwc(cols: Any, x_shape: tuple[int, ...], kernel: int, stride: int, padding: int) -> Any:
    """The adjoint of :func:`im2col_hwc`: a channels-last (n, H, W, C) image from the columns."""
    xp = xp_of(cols)
    n, h, w, c = x_shape
    oh, ow = out_size(h, kernel, stride, padding), out_size(w, kernel, stride, padding)
    cols = cols.reshape(n, oh, ow, kernel, kernel, c)
    out = xp.zeros((n, h + 2 * padding, w + 2 * padding, c), dtype=cols.dtype)
    for i in range(kernel):
        for j in range(kernel):
            out[:, i : i + stride * oh : stride, j : j + stride * ow : stride] += cols[:, :, :, i, j]
    return out[:, padding : padding + h, padding : padding + w] if padding else out


def windows(x: Any, size: int, stride: int):
    """Yield ``(i, j, view)`` for every offset in a size x size window: ``view`` is the
    (n, C, OH, OW) array of the pixel at offset (i, j) of each window (pooling)."""
    _, _, h, w = x.shape
    oh, ow = out_size(h, size, stride), out_size(w, size, stride)
    for i in range(size):
        for j in range(size):
            yield i, j, x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
