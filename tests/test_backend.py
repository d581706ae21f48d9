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


HEAP_PROBE = """
import resource, sys
import numpy as np
from xsharp import backend
if sys.argv[1] == "steady":
    backend.steady_heap()
def step():  # six 4 MiB temporaries made and freed, as one batch-1024 MLP step does
    arrays = [np.ones(1 << 20, dtype=np.float32) for _ in range(6)]
    del arrays
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def test_training_temporaries_reuse_the_heap_instead_of_faulting_in_each_step():
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.fail("this check is about glibc's allocator; run it where glibc is the C library")
    faults = {
        mode: float(subprocess.run([sys.executable, "-c", HEAP_PROBE, mode], capture_output=True, text=True, check=True).stdout)
        for mode in ("default", "steady")
    }
    # a fresh process left to glibc's defaults gives the freed 24 MiB back and faults it in again
    # (about 3,000 page faults a step); with steady_heap the step runs on pages it already has
    assert faults["steady"] < 100, faults
    assert faults["default"] > 10 * max(faults["steady"], 1), faults
