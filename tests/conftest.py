"""Shared fixtures: one real local Ray for the whole session, tiny specs, a CLI runner."""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny",
    "data": {"dataset": "digits", "limit": 600},
    "model": [{"rbm": {"hidden": 32}}, {"autoencoder": {"hidden": 24}}, {"softmax": {}}],
    "pretrain": {"epochs": 3, "batch_size": 20},
    "train": {"epochs": 20, "batch_size": 20, "learning_rate": 0.3},
    "seed": 3,
}


@pytest.fixture
def tiny() -> dict:
    """A spec that trains in well under a second (a fresh copy per test)."""
    return copy.deepcopy(TINY)


@pytest.fixture(scope="session")
def ray_address() -> str:
    """One real local Ray per test session: 2 CPUs, no dashboard, a small object store."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024**2, logging_level=logging.ERROR, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def run_cli(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the installed `xsharp` command as a user would."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("XSHARP_RAY_ADDRESS", "RAY_ADDRESS")}
    full_env.update(env or {})
    exe = Path(sys.executable).with_name("xsharp")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT)
