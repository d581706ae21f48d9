"""`xsharp cluster up`: provision nodes with the playbook in ansible/ (a thin ansible-playbook wrapper)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import typer

from .common import EXIT_FAILED, err, fail

ANSIBLE_DIR_ENV = "XSHARP_ANSIBLE_DIR"
REQUIRED_GROUPS = ("head",)


def _ansible_dir() -> Path | None:
    """ansible/ beside the xsharp package (a source checkout) or where XSHARP_ANSIBLE_DIR says."""
    if os.environ.get(ANSIBLE_DIR_ENV):
        return Path(os.environ[ANSIBLE_DIR_ENV])
    here = Path(__file__).resolve().parents[2] / "ansible"
    return here if (here / "site.yml").is_file() else None


def _tool(name: str) -> str | None:
    """An ansible command on PATH, or beside this Python (a virtualenv that was not activated)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.is_file() else None)


def check_inventory(inventory: Path, ansible_inventory: str) -> dict:
    """Parse the inventory with ansible itself; raise ValueError with a message for people."""
    if not inventory.is_file():
        raise ValueError(f"--inventory {inventory}: no such file")
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True", "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True"}
    proc = subprocess.run([ansible_inventory, "-i", str(inventory), "--list"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise ValueError(f"--inventory {inventory}: ansible cannot parse it: {' '.join(lines[-3:])[:500]}")
    data = json.loads(proc.stdout)
    for group in REQUIRED_GROUPS:
        if not data.get(group, {}).get("hosts"):
            raise ValueError(f"--inventory {inventory}: group [{group}] has no host (groups: head, workers, monitoring)")
    if len(data["head"]["hosts"]) != 1:
        raise ValueError(f"--inventory {inventory}: group [head] must have exactly one host, got {len(data['head']['hosts'])}")
    return data


def cluster_up(
    inventory: Path = typer.Option(
        ..., "--inventory", "-i", help="Ansible inventory with groups head, workers, monitoring (see ansible/inventory.example.ini)."
    ),
    check: bool = typer.Option(False, "--check", help="Dry run: ansible-playbook --check --diff, nothing changes on the nodes."),
    extra_vars: list[str] = typer.Option([], "--extra-vars", "-e", help="KEY=VALUE or @FILE passed to ansible-playbook -e; repeatable."),
    limit: str | None = typer.Option(None, "--limit", "-l", help="Only these hosts or groups (ansible --limit)."),
    playbook: Path | None = typer.Option(None, "--playbook", help=f"Playbook to run; default: ansible/site.yml of this checkout or ${ANSIBLE_DIR_ENV}."),
) -> None:
    """Provision the nodes of an inventory: packages, GPU driver checks, xsharp, Ray head and workers as services, exporters, Prometheus.

    Runs ansible-playbook on site.yml; a second run changes nothing. Exit code 2: ansible missing or a bad inventory; 1: the playbook failed.

    Example: xsharp cluster up --inventory ansible/inventory.ini --check
    """
    ansible_playbook, ansible_inventory = _tool("ansible-playbook"), _tool("ansible-inventory")
    if not ansible_playbook or not ansible_inventory:
        raise fail("ansible-playbook not found: install it with `pip install ansible-core` (or `pip install 'xsharp[dev]'`)")
    if playbook is None:
        found = _ansible_dir()
        if found is None:
            raise fail(f"no playbook: pass --playbook PATH/site.yml or set {ANSIBLE_DIR_ENV} to the ansible/ folder of an xsharp checkout")
        playbook = found / "site.yml"
    if not playbook.is_file():
        raise fail(f"--playbook {playbook}: no such file")
    try:
        groups = check_inventory(inventory, ansible_inventory)
    except ValueError as e:
        raise fail(str(e)) from None
    hosts = groups.get("_meta", {}).get("hostvars", {}) or groups["all"].get("hosts", [])
    err.print(f"provisioning {len(hosts)} host(s) from {inventory}{' (check mode)' if check else ''}", markup=False)
    cmd = [ansible_playbook, "-i", str(inventory.resolve()), str(playbook.resolve())]
    for ev in extra_vars:
        cmd += ["-e", ev]
    if limit:
        cmd += ["--limit", limit]
    if check:
        cmd += ["--check", "--diff"]
    # Run from the playbook's folder so its ansible.cfg (roles_path) applies.
    rc = subprocess.run(cmd, cwd=playbook.resolve().parent).returncode
    if rc != 0:
        raise fail(f"ansible-playbook failed with exit code {rc}", EXIT_FAILED)
