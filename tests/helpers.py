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

# `python -c NO_RAY SCRIPT ARGS...` runs SCRIPT as __main__ after putting a finder first on the import path that refuses
# `ray` and its submodules, as an interpreter without Ray installed would.
NO_RAY = """
import importlib.abc, runpy, sys

class NoRay(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r} (ray is absent here)")
        return None

sys.meta_path.insert(0, NoRay())
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
assert not [m for m in sys.modules if m == "ray" or m.startswith("ray.")], "ray was imported"
"""


def tiny_spec() -> dict:
    """A spec that trains in well under a second (a fresh copy each call)."""
    return copy.deepcopy(TINY)


def run_cli(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the installed `xsharp` command as a user would."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("XSHARP_RAY_ADDRESS", "RAY_ADDRESS")}
    full_env.update(env or {})
    exe = Path(sys.executable).with_name("xsharp")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT)
