"""Shared fixtures (one real local Ray for the whole session, a tiny spec) and the test markers.

Markers say what a test needs beyond Python (`make test-unit` runs the tests that need none):
- ``ray``: a real Ray: the session's local Ray, a server that starts one, or a CLI run on one;
- ``system``: a Debian package that scripts/system-deps.sh installs (prometheus, espeak-ng, sox,
  dataset-fashion-mnist, openssh-server);
- ``browser``: the console in a real Chromium through Playwright;
- ``ansible``: ansible or molecule against real hosts.
A test gets them from the fixtures it uses or from the file it is in (below), never by hand, so
a new test in a Ray file is a Ray test until it is moved.
"""

from __future__ import annotations

import logging

import pytest

from tests.helpers import tiny_spec

MARKERS = {
    "ray": "starts or joins a real Ray (the session's local Ray, a server with one, or a CLI run on one)",
    "system": "needs a Debian package installed by scripts/system-deps.sh",
    "browser": "drives the web console in a real Chromium (Playwright)",
    "ansible": "runs ansible or molecule",
}

# Fixtures whose use says what a test needs (pytest lists the fixtures a test uses, transitively).
FIXTURE_MARKS = {
    "ray_address": ("ray",),
    "spoken_digits": ("system",),  # espeak-ng
    "second_ray": ("ray",),  # a real `ray start --head` beside the session's
}

# Single tests in files that otherwise need nothing.
TEST_MARKS = {
    "test_audio.py::test_synth_script_is_reproducible_and_writes_the_layout": ("system",),  # espeak-ng, sox
    "test_data_formats.py::test_real_fashion_mnist_headers_and_first_rows": ("system",),  # dataset-fashion-mnist
}

# Files whose tests all need something: servers with an embedded Ray, CLI runs in Ray modes,
# Playwright, Debian's packages.
FILE_MARKS = {
    "test_ansible.py": ("ansible", "system"),
    "test_ansible_netns.py": ("ansible", "system"),
    "test_appliance_prometheus.py": ("system",),
    "test_recipes_from_a_clone.py": ("system", "ray"),
    "test_ui.py": ("browser", "ray"),
    "test_ui_datasets.py": ("browser", "ray"),
    "test_ui_job_page.py": ("browser", "ray"),
    "test_ui_models.py": ("browser", "ray"),
    "test_service.py": ("ray",),
    "test_security.py": ("ray",),
    "test_fair_share.py": ("ray",),
    "test_interrupt.py": ("ray",),
    "test_fault_tolerance.py": ("ray",),
    "test_serve.py": ("ray",),
    "test_data_import.py": ("ray",),
    "test_datasets_api.py": ("ray",),
    "test_model_registry.py": ("ray",),
    "test_predict.py": ("ray",),
    "test_api_fuzz.py": ("ray",),
    "test_cli.py": ("ray",),
    "test_cli_run_and_submit.py": ("ray",),
    "test_search.py": ("ray",),
    "test_export.py": ("system",),
    "test_gpu_check.py": ("ray",),
}


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(FILE_MARKS.get(item.path.name, ())) | set(TEST_MARKS.get(f"{item.path.name}::{getattr(item, 'originalname', item.name)}", ()))
        for fixture in getattr(item, "fixturenames", ()):
            names.update(FIXTURE_MARKS.get(fixture, ()))
        for name in sorted(names):
            item.add_marker(name)


@pytest.fixture
def tiny() -> dict:
    """A spec that trains in well under a second (a fresh copy per test)."""
    return tiny_spec()


@pytest.fixture(scope="session")
def ray_address() -> str:
    """One real local Ray per test session: 2 CPUs, no dashboard, a small object store."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024**2, logging_level=logging.ERROR, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
