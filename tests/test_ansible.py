"""The ansible/ playbook: syntax, `ansible-lint --profile production`, `xsharp cluster up` errors, and a
real converge of common, nvidia, xsharp, ray_head and xsharp_exporter on localhost into a throw-away prefix.

The converge uses `xsharp_service_manager: none` (no systemd here: PID 1 is not systemd), so the rendered
units run under the playbook's own xsharp-supervise with pidfiles. xsharp is installed as a wheel built from
this checkout into a fresh venv under the prefix with --no-deps; that venv reaches the dependencies (Ray,
NumPy, ...) of the venv running the tests through a .pth file (xsharp_venv_extra_paths), which keeps the
test at about a minute instead of a multi-GB dependency install, while xsharp itself comes from the wheel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
UNITS = ("xsharp-exporter", "xsharp-ray-head")


def _tool(name: str) -> str:
    path = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return path


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_base() -> int:
    """A base port with base..base+9 and the worker range base+20..base+119 free on loopback."""
    for base in range(46000, 60000, 500):
        if all(_free(p) for p in [*range(base, base + 10), base + 20, base + 119]):
            return base
    pytest.skip("no free port range on loopback")


def _recap(output: str) -> dict[str, int]:
    """Totals of the PLAY RECAP lines: ok, changed, unreachable, failed, ..."""
    totals: dict[str, int] = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        for key, value in re.findall(r"(\w+)=(\d+)", line):
            totals[key] = totals.get(key, 0) + int(value)
    return totals


def _kill_under(prefix: str) -> None:
    """Kill every process whose command line mentions the prefix (a safety net after the supervisor)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if prefix in cmdline:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


def test_playbook_syntax():
    proc = subprocess.run(
        [_tool("ansible-playbook"), "--syntax-check", "-i", "inventory.example.ini", "site.yml"], cwd=ANSIBLE, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lint_production_profile():
    proc = subprocess.run([_tool("ansible-lint"), "--profile", "production", "--nocolor"], cwd=ANSIBLE, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr


def test_every_role_variable_is_documented():
    """Every variable in a role's defaults/main.yml has a comment line right above it."""
    for defaults in ANSIBLE.glob("roles/*/defaults/main.yml"):
        lines = defaults.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^[a-z_]+:", line):
                role = defaults.parts[-3]
                assert line.startswith(role + "_"), f"{defaults}: {line.split(':')[0]} lacks the role prefix"
                assert lines[i - 1].startswith("#"), f"{defaults}: {line.split(':')[0]} has no comment"


def _xsharp(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xsharp.cli.main", *args], capture_output=True, text=True, **kw)


def test_cluster_up_bad_inventory(tmp_path):
    _tool("ansible-playbook")
    missing = _xsharp("cluster", "up", "--inventory", str(tmp_path / "nope.ini"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "nohead.ini").write_text("[workers]\nnode1 ansible_connection=local\n")
    nohead = _xsharp("cluster", "up", "--inventory", str(tmp_path / "nohead.ini"))
    assert nohead.returncode == 2 and "group [head] has no host" in nohead.stderr
    (tmp_path / "broken.ini").write_text("[head\nnode1\n")
    broken = _xsharp("cluster", "up", "--inventory", str(tmp_path / "broken.ini"))
    assert broken.returncode == 2 and "cannot parse" in broken.stderr
    assert "Traceback" not in missing.stderr + nohead.stderr + broken.stderr


def test_cluster_up_without_ansible(tmp_path):
    env = {**os.environ, "PATH": "/nonexistent"}
    # A python outside any venv holding ansible: the base interpreter through a symlink in tmp.
    py = tmp_path / "python3"
    py.symlink_to(sys._base_executable)
    proc = subprocess.run(
        [str(py), "-c", "import sys; sys.path[:0] = sys.argv[1:]; from xsharp.cli.main import main; sys.argv = ['xsharp', 'cluster', 'up', '-i', 'x.ini']; main()",
         str(REPO), sysconfig.get_paths()["purelib"]],
        capture_output=True, text=True, env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install ansible-core" in proc.stderr


@pytest.fixture(scope="module")
def converged():
    _tool("ansible-playbook")
    # Short prefix: Ray's unix sockets live under its temp dir and paths are limited to 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="xs-", dir="/tmp"))
    prefix = root / "root"
    base = _port_base()
    ports = {
        "ray": base, "node_manager": base + 1, "object_manager": base + 2, "agent_grpc": base + 3,
        "runtime_env": base + 4, "agent_listen": base + 5, "metrics": base + 6, "exporter": base + 7,
    }
    (root / "inventory.ini").write_text(f"[head]\nnode0 ansible_connection=local ansible_python_interpreter={sys.executable}\n[workers]\n[monitoring]\n")
    extra = {
        "xsharp_prefix": str(prefix),
        "xsharp_service_manager": "none",
        "xsharp_user": "root" if os.getuid() == 0 else os.environ.get("USER", "nobody"),
        "xsharp_group": "root" if os.getuid() == 0 else os.environ.get("USER", "nobody"),
        "xsharp_ray_head_ip": "127.0.0.1",
        "xsharp_ray_port": ports["ray"],
        "xsharp_enable_server": False,
        "ansible_become": False,
        "common_install_packages": False,
        "common_manage_user": False,
        "xsharp_wheel_dir": str(root / "wheels"),
        "xsharp_python": sys._base_executable,
        "xsharp_pip_extra_args": "--no-deps",
        "xsharp_venv_extra_paths": [sysconfig.get_paths()["purelib"]],
        "ray_head_node_manager_port": ports["node_manager"],
        "ray_head_object_manager_port": ports["object_manager"],
        "ray_head_dashboard_agent_grpc_port": ports["agent_grpc"],
        "ray_head_runtime_env_agent_port": ports["runtime_env"],
        "ray_head_dashboard_agent_listen_port": ports["agent_listen"],
        "ray_head_min_worker_port": base + 20,
        "ray_head_max_worker_port": base + 119,
        "ray_head_metrics_export_port": ports["metrics"],
        "ray_head_num_cpus": 1,
        "ray_head_object_store_memory": 128 * 1024**2,
        "ray_head_stop_timeout": 10,
        "xsharp_exporter_host": "127.0.0.1",
        "xsharp_exporter_port": ports["exporter"],
    }
    (root / "vars.json").write_text(json.dumps(extra))
    cmd = ["cluster", "up", "--inventory", str(root / "inventory.ini"), "-e", f"@{root / 'vars.json'}"]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    runs = []
    try:
        for _ in range(2):
            t0 = time.monotonic()
            proc = _xsharp(*cmd, env=env, timeout=400)
            runs.append({"rc": proc.returncode, "out": proc.stdout + proc.stderr, "seconds": time.monotonic() - t0})
            if proc.returncode != 0:
                break
        yield {"prefix": prefix, "ports": ports, "runs": runs}
    finally:
        supervisor = prefix / "usr/local/sbin/xsharp-supervise"
        for unit in UNITS:
            if supervisor.exists():
                subprocess.run([sys.executable, str(supervisor), "stop", unit], capture_output=True, timeout=60)
        _kill_under(str(root))
        shutil.rmtree(root, ignore_errors=True)


def test_converge_then_idempotent(converged):
    first, *rest = converged["runs"]
    assert first["rc"] == 0, first["out"][-6000:]
    assert _recap(first["out"]).get("changed", 0) > 0
    assert rest and rest[0]["rc"] == 0, rest[0]["out"][-6000:] if rest else "no second run"
    recap = _recap(rest[0]["out"])
    assert recap.get("changed") == 0 and recap.get("failed") == 0, rest[0]["out"][-6000:]
    print(f"converge {first['seconds']:.1f}s, second run {rest[0]['seconds']:.1f}s, recap {recap}")


def test_converged_files(converged):
    prefix = converged["prefix"]
    assert (prefix / "etc/systemd/system/xsharp-ray-head.service").is_file()
    assert (prefix / "etc/systemd/system/xsharp-exporter.service").is_file()
    token = (prefix / "etc/xsharp/ray_auth_token").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert oct((prefix / "etc/xsharp/ray_auth_token").stat().st_mode & 0o777) == "0o600"
    env = (prefix / "etc/xsharp/xsharp.env").read_text()
    assert f"XSHARP_RAY_ADDRESS=127.0.0.1:{converged['ports']['ray']}" in env and "RAY_AUTH_MODE=token" in env
    # xsharp comes from the wheel in the prefix's venv, not from this checkout.
    venv_py = prefix / "opt/xsharp/venv/bin/python"
    where = subprocess.run([str(venv_py), "-c", "import xsharp; print(xsharp.__file__)"], capture_output=True, text=True, cwd="/")
    assert where.stdout.strip().startswith(str(prefix / "opt/xsharp/venv")), where.stdout + where.stderr


def test_ray_head_answers_with_token(converged):
    prefix, port = converged["prefix"], converged["ports"]["ray"]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(prefix / "etc/xsharp/ray_auth_token")}
    env.pop("RAY_AUTH_TOKEN", None)
    proc = subprocess.run([str(BIN / "ray"), "status", "--address", f"127.0.0.1:{port}"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Active:" in proc.stdout and "1 node_" in proc.stdout
    assert "/1.0 CPU" in proc.stdout


def test_exporter_serves_metrics(converged):
    url = f"http://127.0.0.1:{converged['ports']['exporter']}/metrics"
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read().decode()
    assert resp.status == 200
    assert "xsharp_node_health_check" in body or "xsharp_" in body
