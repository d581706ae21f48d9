"""`xsharp` starts light: a command's module is imported only when that command runs, and the
summaries `xsharp --help` lists without importing them are the commands' own."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from xsharp.cli.main import COMMANDS

PROBE = """
import sys
from xsharp.cli.main import main
sys.argv = ["xsharp", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
print("MODULES", *sorted(m for m in sys.modules if m.startswith("xsharp") or m in ("numpy", "ray", "fastapi")))
"""


def imported_by(*args: str) -> set[str]:
    """The xsharp modules (and numpy, ray, fastapi) a run of `xsharp ARGS` imports."""
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.splitlines()[-1].split()[1:])  # the help text comes first


def test_help_imports_no_command_module():
    assert imported_by("--help") == {"xsharp", "xsharp.cli", "xsharp.cli.main", "xsharp.cli.lazy_group"}


def test_a_client_command_imports_neither_the_algorithms_nor_the_spec():
    modules = imported_by("jobs", "list", "--help")
    assert "xsharp.cli.jobs_cmd" in modules
    assert not modules & {"xsharp.algos", "xsharp.spec", "numpy", "ray", "fastapi"}


@pytest.mark.parametrize("entry", COMMANDS, ids=[c.name for c in COMMANDS])
def test_each_listed_summary_is_the_commands_own(entry):
    command = entry.load()
    first = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ").strip()
    assert entry.summary == first
    assert command.name == entry.name
