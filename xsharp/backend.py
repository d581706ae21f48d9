"""Array backend: NumPy on CPU, CuPy on GPU, chosen once per worker.

Math code asks for ``xp = backend.xp(device)`` and never branches on the device.
CuPy is optional: everything here imports and works without it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

Device = Literal["auto", "cpu", "gpu"]
DTYPE = np.float32

try:  # CuPy is the `gpu` extra; its absence is normal on CPU machines.
    import cupy as _cupy
except Exception:  # ImportError, or a CUDA library that fails to load
    _cupy = None

# Where there is no CuPy, tests may ask for the strict stand-in as "the GPU" (xsharp.strict_xp):
# NumPy's maths under CuPy's rules, in this process and in the Ray workers a job starts.
STANDIN_ENV = "XSHARP_GPU_STANDIN"
if _cupy is None and os.environ.get(STANDIN_ENV) == "strict":
    from xsharp.strict_xp import namespace as _cupy


@functools.cache
def steady_heap() -> None:
    """Keep buffers freed by one training step in this process's heap for the next (glibc).

    A step allocates and frees the same few batch-sized temporaries. glibc serves those of
    more than 128 KiB with mmap at first and raises that threshold as they are freed, so a
    long-lived process settles into reusing its heap; a fresh worker process mid-way does not
    always, and then every step maps and faults in its temporaries again: 30 times the page
    faults and 7 % of a data-parallel worker's time at batch 1024. Fixed thresholds (32 MiB,
    the most glibc takes, and 256 MiB before freed heap is returned) make every process behave
    like the settled one. Called where training engines start; harmless elsewhere (no glibc)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(M_TRIM_THRESHOLD, 256 << 20)
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators are left alone
        pass


def cap_heap(limit: int | None) -> None:
    """Cap this process's data segment (heap and private mappings) at ``limit`` bytes: past it an
    allocation raises MemoryError instead of taking the node's memory. The address-space limit
    would not do: Ray maps gigabytes a worker never touches. None: no cap."""
    if not limit:
        return
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))  # the process is the job's alone


class DeviceError(RuntimeError):
    """The requested device is not available on this machine."""


def gpu_count() -> int:
    """How many GPUs CuPy can see here (0 without CuPy or a driver)."""
    if _cupy is None:
        return 0
    try:
        return int(_cupy.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


def resolve(device: str = "auto") -> Literal["cpu", "gpu"]:
    """Turn ``auto`` into the concrete device; refuse ``gpu`` where there is none."""
    if device == "cpu":
        return "cpu"
    if device == "gpu":
        if gpu_count() == 0:
            reason = "CuPy is not installed (pip install 'xsharp[gpu]')" if _cupy is None else "CuPy sees no GPU"
            raise DeviceError(f"device 'gpu' requested but {reason}")
        return "gpu"
    if device == "auto":
        return "gpu" if gpu_count() > 0 else "cpu"
    raise DeviceError(f"unknown device {device!r}: use auto, cpu or gpu")


def xp(device: str = "cpu") -> Any:
    """The array module for a device: ``numpy`` or ``cupy``."""
    return _cupy if resolve(device) == "gpu" else np


def xp_of(array: Any) -> Any:
    """The array module an array belongs to."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy
    return np


def to_device(array: Any, device: str = "cpu", dtype: Any = None) -> Any:
    """Copy a host (or device) array onto ``device``; floats become ``dtype`` (float32 by default)."""
    module = xp(device)
    arr = module.asarray(array)
    if dtype is None and arr.dtype.kind == "f":
        dtype = DTYPE
    return arr.astype(dtype, copy=False) if dtype is not None else arr


def to_host(array: Any) -> np.ndarray:
    """A NumPy array with the same values, wherever ``array`` lives."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy.asnumpy(array)
    return np.asarray(array)


def seed_of(*keys: int) -> int:
    """One 63-bit seed from several integers (run seed, phase, epoch, step ...)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> 1)


def rng(seed: int | tuple[int, ...], device: str = "cpu") -> Any:
    """A seeded random generator on ``device`` (``numpy``/``cupy`` ``default_rng``)."""
    keys = seed if isinstance(seed, tuple) else (seed,)
    return xp(device).random.default_rng(seed_of(*keys))


class RowRNG:
    """Random numbers for rows ``offset .. offset+n`` of a global batch of ``total`` rows.

    Every worker draws the whole batch's numbers from the same seed and keeps its rows, so a
    batch split over N data-parallel workers samples exactly what one worker would have.
    """

    def __init__(self, generator: Any, offset: int = 0, total: int | None = None):
        self.generator = generator
        self.offset = offset
        self.total = total

    def _rows(self, draw: Callable[..., Any], shape: tuple[int, ...], dtype: Any) -> Any:
        total = self.total if self.total is not None else shape[0]
        full = draw((total, *shape[1:]), dtype=dtype)
        return full[self.offset : self.offset + shape[0]]

    def random(self, shape: tuple[int, ...], dtype: Any = DTYPE) -> Any:
        return self._rows(self.generator.random, shape, dtype)

    def standard_normal(self, shape: tuple[int, ...], dtype: Any = DTYPE) -> Any:
        return self._rows(self.generator.standard_normal, shape, dtype)
