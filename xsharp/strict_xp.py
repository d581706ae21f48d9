"""A stand-in for CuPy on machines without a GPU: NumPy's maths under CuPy's rules.

The CuPy path of the math code cannot run where there is no GPU, yet the errors it would raise
there are easy to make on CPU, where NumPy forgives them. This namespace computes with NumPy
but holds its arrays apart from NumPy's, as device memory is, and refuses what CuPy refuses or
what would cost a GPU dearly:

- an implicit conversion to NumPy: ``numpy.asarray(a)``, ``float(a)`` or ``int(a)`` on an array
  that is not 0-d, ``a.tolist()``. The explicit ways stay open: ``backend.to_host(a)``,
  ``a.get()``, ``xp.asnumpy(a)``, and ``float`` of a 0-d result;
- a host (NumPy) array mixed into a device operation, as an operand, an ``out=`` or the value
  of an assignment; ``xp.asarray`` and ``xp.array`` are the way onto the device;
- a silent upcast to float64: an operation whose result is float64 when none of its inputs was
  float64 and no ``dtype`` asked for it (``xp.zeros(n)``, ``f32 * np.float64(2)``, ``int / int``).

It is what ``backend`` uses as "the GPU" when ``XSHARP_GPU_STANDIN=strict`` is set and CuPy is
absent, or when a test sets it as ``backend._cupy``. Results are NumPy's, bit for bit, so a
run on the stand-in must equal the same run on the CPU. ``transfers`` counts the explicit
device-to-host reads (each a synchronisation on a real GPU), for tests that bound them.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin


class StrictDeviceError(TypeError):
    """An operation a GPU array would refuse, or would make silently slow."""


transfers = 0  # device-to-host reads made explicitly (get, asnumpy, float of a 0-d array, item)

# NumPy functions that take host data and put it on the device, as CuPy's do.
_ONTO_DEVICE = {"asarray", "array", "asanyarray"}
# NumPy helpers that take no array and make none: passed through unchanged.
_PASS = {"finfo", "iinfo", "dtype", "result_type", "can_cast", "promote_types", "issubdtype", "ndim", "shape"}


def _count() -> None:
    global transfers
    transfers += 1


class ndarray(NDArrayOperatorsMixin):  # noqa: N801 -- named as cupy.ndarray, which code tests against
    """An array "on the device": NumPy storage that NumPy cannot see."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, data: np.ndarray):
        if not isinstance(data, np.ndarray):
            raise TypeError("strict_xp.ndarray wraps a NumPy array; make device arrays with xp.asarray")
        self._a = data

    # -- the ways off the device: explicit only ------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise StrictDeviceError(
            "implicit conversion of a device array to NumPy (numpy.asarray, numpy.testing, a host "
            "array's assignment, ...): use backend.to_host(a) where the host copy is meant"
        )

    def get(self) -> np.ndarray:
        _count()
        return self._a.copy()

    def tolist(self):
        raise StrictDeviceError("a.tolist() on a device array copies to the host: use backend.to_host(a).tolist() where it is meant")

    def item(self):
        _count()
        return self._a.item()

    def _scalar(self, kind: type):
        if self._a.ndim != 0:
            raise StrictDeviceError(f"{kind.__name__}() of a device array of shape {self._a.shape}: only a 0-d result converts")
        _count()
        return kind(self._a)

    def __float__(self) -> float:
        return self._scalar(float)

    def __int__(self) -> int:
        return self._scalar(int)

    def __bool__(self) -> bool:
        return self._scalar(bool)

    def __index__(self) -> int:
        if self._a.dtype.kind not in "iu":
            raise StrictDeviceError(f"a {self._a.dtype} device array used as an index")
        return self._scalar(int)

    # -- array protocol ------------------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = f"{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
        args, f64 = _unwrap(inputs, name)
        if "out" in kwargs:
            outs, _ = _unwrap(kwargs["out"], name, out=True)
            kwargs["out"] = tuple(outs)
        kwargs, f64_kw = _unwrap_kwargs(kwargs, name)
        result = getattr(ufunc, method)(*args, **kwargs)
        return _wrap(result, name, f64 or f64_kw)

    def __array_function__(self, func, types_, args, kwargs):
        module = func.__module__ or "numpy"
        space = namespace
        for part in module.split(".")[1:]:
            if part.startswith("_"):
                continue
            space = getattr(space, part, None)
            if space is None:
                break
        impl = getattr(space, func.__name__, None) if space is not None else None
        if impl is None:
            return NotImplemented
        return impl(*args, **kwargs)

    # -- shape, indexing and the rest of NumPy's array ----------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape

    @property
    def dtype(self) -> np.dtype:
        return self._a.dtype

    @property
    def ndim(self) -> int:
        return self._a.ndim

    @property
    def size(self) -> int:
        return self._a.size

    @property
    def nbytes(self) -> int:
        return self._a.nbytes

    @property
    def itemsize(self) -> int:
        return self._a.itemsize

    @property
    def strides(self) -> tuple[int, ...]:
        return self._a.strides

    @property
    def T(self) -> ndarray:  # noqa: N802
        return ndarray(self._a.T)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        return (ndarray(np.asarray(row)) for row in self._a)

    def __getitem__(self, key):
        key, _ = _unwrap(key if isinstance(key, tuple) else (key,), "indexing")
        return _wrap(self._a[tuple(key)], "indexing", True)

    def __setitem__(self, key, value):
        key, _ = _unwrap(key if isinstance(key, tuple) else (key,), "indexing")
        (value,), _ = _unwrap((value,), "assignment")
        self._a[tuple(key)] = value

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("data", "ctypes", "flat"):
            # __array_interface__, __array_struct__, __dlpack__, the raw buffer: NumPy's other ways
            # to read the memory, which device memory does not offer
            raise AttributeError(f"strict_xp.ndarray has no {name!r}")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr, name, True) if isinstance(attr, np.ndarray) else attr
        return _method(attr, f"a.{name}", self._a.dtype == np.float64)

    def __repr__(self) -> str:
        return f"strict_xp.ndarray({self._a!r})"

    def __reduce__(self):
        return (ndarray, (self._a,))

    def __copy__(self) -> ndarray:
        return ndarray(self._a.copy())

    def __deepcopy__(self, memo) -> ndarray:
        return ndarray(self._a.copy())


def _unwrap(values, name: str, out: bool = False) -> tuple[list, bool]:
    """The NumPy arrays behind ``values`` (lists and tuples walked), refusing host arrays; and
    whether any of them is float64."""
    f64 = False
    result = []
    for v in values:
        if isinstance(v, ndarray):
            f64 |= v._a.dtype == np.float64
            result.append(v._a)
        elif isinstance(v, np.ndarray):
            where = "as an out= of" if out else "into"
            raise StrictDeviceError(f"a host (NumPy) array of shape {v.shape} mixed {where} the device operation {name}: move it with xp.asarray first")
        elif isinstance(v, (list, tuple)):
            inner, f = _unwrap(v, name, out)
            f64 |= f
            result.append(type(v)(inner) if isinstance(v, list) else tuple(inner))
        else:
            if not isinstance(v, np.generic) and _explicit_f64((v,)):  # a float64 scalar is no request
                f64 = True
            result.append(v)
    return result, f64


def _unwrap_kwargs(kwargs: dict, name: str) -> tuple[dict, bool]:
    f64 = False
    out = {}
    for k, v in kwargs.items():
        if k == "dtype" and v is not None:
            f64 |= np.dtype(v) == np.float64
            out[k] = v
        elif k == "out":
            out[k] = v  # already unwrapped by the caller
        else:
            (out[k],), f = _unwrap((v,), name)
            f64 |= f
    return out, f64


def _wrap(value, name: str, float64_in: bool):
    """Results back "onto the device": arrays and NumPy scalars become device arrays (CuPy gives
    0-d arrays where NumPy gives scalars); a float64 that no input asked for is refused."""
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype == np.float64 and not float64_in:
            raise StrictDeviceError(f"{name} made float64 from inputs that were not: a silent upcast (pass dtype=, or keep the operands float32)")
        return ndarray(np.asarray(value) if isinstance(value, np.generic) else value)
    if isinstance(value, tuple):
        wrapped = [_wrap(v, name, float64_in) for v in value]
        return type(value)(*wrapped) if hasattr(value, "_fields") else tuple(wrapped)
    if isinstance(value, list):
        return [_wrap(v, name, float64_in) for v in value]
    return value


def _method(fn: Callable, name: str, float64_self: bool) -> Callable:
    def call(*args, **kwargs):
        uargs, f64 = _unwrap(args, name)
        ukw, f64_kw = _unwrap_kwargs(kwargs, name)
        if "out" in kwargs:
            (ukw["out"],), _ = _unwrap((kwargs["out"],), name, out=True)
        return _wrap(fn(*uargs, **ukw), name, float64_self or f64 or f64_kw)

    return call


def _function(fn: Callable, name: str) -> Callable:
    onto = name.rsplit(".", 1)[-1] in _ONTO_DEVICE

    def call(*args, **kwargs):
        if onto:  # the explicit way onto the device: host arrays are welcome, and copied as CuPy does
            source = args[0] if args else kwargs.pop("a", kwargs.pop("object", None))
            on_device = isinstance(source, ndarray)
            if on_device:
                source = source._a
            elif isinstance(source, (list, tuple)):
                _unwrap(source, name)  # a list holds Python numbers or device arrays, not host arrays
            # float64 is kept where the host data was float64 or dtype= asks; Python floats are not a request
            f64 = (isinstance(source, (np.ndarray, np.generic)) and source.dtype == np.float64) or _explicit_f64(args[1:] + tuple(kwargs.values()))
            made = np.array(fn(source, *args[1:], **kwargs), copy=None if on_device else True)
            return _wrap(made, name, f64)
        uargs, f64 = _unwrap(args, name)
        ukw, f64_kw = _unwrap_kwargs(kwargs, name)
        if "out" in kwargs:
            (ukw["out"],), _ = _unwrap((kwargs["out"],), name, out=True)
        return _wrap(fn(*uargs, **ukw), name, f64 or f64_kw)

    call.__name__ = name
    return call


def _explicit_f64(values) -> bool:
    """Whether any of ``values`` names float64 as a dtype (``astype(np.float64)``, ``dtype="f8"``)."""
    for v in values:
        if isinstance(v, (type, np.dtype, str)):
            try:
                if np.dtype(v) == np.float64:
                    return True
            except TypeError:
                pass
    return False


class _Generator:
    """``xp.random.default_rng(seed)``: NumPy's generator, numbers made on the "device"."""

    def __init__(self, seed):
        self._g = np.random.default_rng(seed)

    def __getattr__(self, name: str):
        return _method(getattr(self._g, name), f"random.{name}", False)


class _Namespace(types.SimpleNamespace):
    """A module of NumPy (numpy, numpy.linalg, numpy.fft) with its functions made device ones."""

    def __init__(self, module: types.ModuleType, prefix: str):
        super().__init__()
        self._module, self._prefix = module, prefix

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._module, name)
        if isinstance(attr, type) or name in _PASS or not callable(attr):
            return attr  # dtypes (xp.float32), finfo, constants (xp.inf, xp.newaxis)
        return _function(attr, self._prefix + name)


namespace = _Namespace(np, "")
namespace.ndarray = ndarray
namespace.linalg = _Namespace(np.linalg, "linalg.")
namespace.fft = _Namespace(np.fft, "fft.")
namespace.lib = types.SimpleNamespace(stride_tricks=_Namespace(np.lib.stride_tricks, "lib.stride_tricks."))  # as_strided, as CuPy has
namespace.random = types.SimpleNamespace(default_rng=_Generator, Generator=_Generator)
namespace.cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
    get_current_stream=lambda: types.SimpleNamespace(synchronize=lambda: None),
)


def asnumpy(a: Any) -> np.ndarray:
    """The explicit copy to the host (``cupy.asnumpy``)."""
    if isinstance(a, ndarray):
        return a.get()
    return np.asarray(a)


namespace.asnumpy = asnumpy
namespace.__name__ = "xsharp.strict_xp"
