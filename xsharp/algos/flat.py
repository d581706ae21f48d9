"""One contiguous buffer for all of a model's parameters.

Each module's parameters are views into the buffer, in module order, so one module's
parameters are one contiguous slice. Allreduce, parameter-server push/pull and checkpoints
move that one array, not one array per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Entry:
    module: int
    name: str
    shape: tuple[int, ...]
    offset: int
    size: int


class FlatLayout:
    def __init__(self, shapes: list[dict[str, tuple[int, ...]]], fixed: list[tuple[str, ...]] | None = None):
        """``fixed[m]``: names of module m's entries that are not trained (never weight-decayed)."""
        self.fixed = [tuple(f) for f in fixed] if fixed is not None else [()] * len(shapes)
        entries, offset, slices = [], 0, []
        for m, named in enumerate(shapes):
            start = offset
            for name, shape in named.items():
                size = int(np.prod(shape, dtype=np.int64))
                entries.append(Entry(m, name, tuple(shape), offset, size))
                offset += size
            slices.append(slice(start, offset))
        self.entries: list[Entry] = entries
        self.size: int = offset
        self.module_slices: list[slice] = slices
        self._by_module = [[e for e in entries if e.module == m] for m in range(len(shapes))]

    def views(self, buf: Any) -> list[dict[str, Any]]:
        """Per-module dicts of arrays that share memory with ``buf``."""
        return [{e.name: buf[e.offset : e.offset + e.size].reshape(e.shape) for e in mod} for mod in self._by_module]

    def pack(self, module: int, arrays: dict[str, Any], buf: Any) -> None:
        """Write one module's arrays into ``buf``; a missing name is written as zeros."""
        for e in self._by_module[module]:
            dst = buf[e.offset : e.offset + e.size]
            if e.name in arrays:
                dst[...] = arrays[e.name].reshape(-1)
            else:
                dst[...] = 0

    def decay_mask(self, xp: Any, dtype: Any) -> Any:
        """1 over weight matrices and kernels, 0 over biases and fixed entries: weight decay
        applies to the former."""
        mask = np.zeros(self.size, dtype=dtype)
        for e in self.entries:
            if len(e.shape) >= 2 and e.name not in self.fixed[e.module]:
                mask[e.offset : e.offset + e.size] = 1
        return xp.asarray(mask)
