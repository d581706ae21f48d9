"""Image pipeline pieces: random shifts and horizontal flips for augmentation.

Written on the array backend (``xp = xp_of(x)``). The random numbers come from whatever
generator the caller passes, through ``rng.random(shape)`` only, so the training loop's
per-step :class:`xsharp.backend.RowRNG` works as well as a seeded ``default_rng``: the same
seed gives the same augmented rows on any number of workers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xsharp import backend
from xsharp.backend import xp_of


def shift(x: Any, dy: Any, dx: Any) -> Any:
    """Move each image ``(n, [C,] H, W)`` by its own integer offsets (zeros fill the gap)."""
    xp = xp_of(x)
    h, w = x.shape[-2:]
    s = int(max(xp.abs(dy).max(), xp.abs(dx).max())) if x.shape[0] else 0  # the widest shift sets the padding
    if s == 0:
        return x.copy()
    pad = [(0, 0)] * (x.ndim - 2) + [(s, s), (s, s)]
    padded = xp.pad(x, pad)
    rows = (s - dy)[:, None] + xp.arange(h)[None, :]  # (n, H): source row of each output row
    cols = (s - dx)[:, None] + xp.arange(w)[None, :]
    n = xp.arange(x.shape[0])
    if x.ndim == 3:
        return padded[n[:, None, None], rows[:, :, None], cols[:, None, :]]
    moved = padded.transpose(0, 2, 3, 1)[n[:, None, None], rows[:, :, None], cols[:, None, :]]  # (n, H, W, C)
    return moved.transpose(0, 3, 1, 2)


def augment(x: Any, rng: Any, max_shift: int = 2, flip: bool = False) -> Any:
    """Random shifts of up to ``max_shift`` pixels each way and, with ``flip``, a left-right
    mirror of half the images. ``x`` is ``(n, H, W)`` or ``(n, C, H, W)``."""
    xp = xp_of(x)
    n = x.shape[0]
    draws = rng.random((n, 3))
    draws = xp.asarray(draws)
    offsets = xp.floor(draws[:, :2] * (2 * max_shift + 1)).astype(xp.int64) - max_shift
    out = shift(x, offsets[:, 0], offsets[:, 1]) if max_shift > 0 else x.copy()
    if flip:
        mirror = draws[:, 2] < 0.5
        out[mirror] = out[mirror][..., ::-1]
    return out


def augmented_copies(x: np.ndarray, y: np.ndarray, copies: int, seed: int, max_shift: int = 2, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The rows followed by ``copies`` randomly augmented versions of them (seeded)."""
    rng = backend.rng((seed, 0xA6), "cpu")
    xs, ys = [x], [y]
    for _ in range(copies):
        xs.append(augment(x, rng, max_shift, flip))
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)
