"""What several test files share: the repository root, a tiny spec, and the CLI as a user runs it."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny",
    "data": {"dataset": "digits", "limit": 600},
    "model": [{"rbm": {"hidden": 32}}, {"autoencoder": {"hidden": 24}}, {"softmax": {}}],
    "pretrain": {"epochs": 3, "batch_size": 20},
    "train": {"epochs": 20, "batch_size": 20, "learning_rate": 0.3},
    "seed": 3,
}


def tiny_spec() -> dict:
    """A spec that trains in well under a second (a fresh copy each call)."""
    return copy.deepcopy(TINY)


def run_cli(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the installed `xsharp` command as a user would."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("XSHARP_RAY_ADDRESS", "RAY_ADDRESS")}
    full_env.update(env or {})
    exe = Path(sys.executable).with_name("xsharp")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT)
