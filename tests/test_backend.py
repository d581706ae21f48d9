import numpy as np
import pytest

from xsharp import backend


def test_cpu_and_auto_resolve_to_numpy_without_a_gpu():
    assert backend.resolve("cpu") == "cpu"
    assert backend.xp("cpu") is np
    if backend.gpu_count() == 0:
        assert backend.resolve("auto") == "cpu"
        with pytest.raises(backend.DeviceError, match="gpu"):
            backend.resolve("gpu")


def test_unknown_device_is_refused():
    with pytest.raises(backend.DeviceError, match="unknown device"):
        backend.resolve("tpu")


def test_to_device_defaults_floats_to_float32_and_keeps_integers():
    a = backend.to_device(np.arange(6, dtype=np.float64).reshape(2, 3))
    assert a.dtype == np.float32 and a.shape == (2, 3)
    assert backend.to_device(np.arange(3)).dtype.kind == "i"
    assert isinstance(backend.to_host(a), np.ndarray)


def test_rng_is_seeded_and_distinct_per_key():
    a = backend.rng((1, 2, 3)).random(5)
    b = backend.rng((1, 2, 3)).random(5)
    c = backend.rng((1, 2, 4)).random(5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_row_rng_splits_one_batch_exactly():
    whole = backend.RowRNG(backend.rng(7)).random((10, 4))
    top = backend.RowRNG(backend.rng(7), offset=0, total=10).random((6, 4))
    bottom = backend.RowRNG(backend.rng(7), offset=6, total=10).random((4, 4))
    np.testing.assert_array_equal(np.concatenate([top, bottom]), whole)
