"""The ansible/ playbook: syntax, `ansible-lint --profile production`, `xsharp cluster up` errors, and
molecule's default scenario (ansible/molecule/default): site.yml converges common, nvidia, xsharp, ray_head,
xsharp_exporter and monitoring on localhost into a throw-away prefix, a second converge changes nothing
(molecule idempotence), and molecule verify asks the Ray head and the exporter.

The scenario uses `xsharp_service_manager: none` (no systemd here: PID 1 is not systemd), so the rendered
units run under the playbook's own xsharp-supervise with pidfiles. xsharp is installed as a wheel built from
a snapshot of this checkout into a fresh venv under the prefix with --no-deps; that venv reaches the
dependencies (Ray, NumPy, ...) of the venv running the tests through a .pth file (xsharp_venv_extra_paths),
which keeps the test at about a minute instead of a multi-GB dependency install. The two-host cluster in
network namespaces is tests/test_ansible_netns.py.
"""

from __future__ import annotations

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


def _tool(name: str) -> str:
    path = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed (pip install -e '.[dev]')")
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
    pytest.fail("no free port range on loopback")


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
    proc = subprocess.run([_tool("ansible-playbook"), "--syntax-check", "-i", "inventory.example.ini", "site.yml"], cwd=ANSIBLE, capture_output=True, text=True)
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
        [
            str(py),
            "-c",
            "import sys; sys.path[:0] = sys.argv[1:]; from xsharp.cli.main import main; sys.argv = ['xsharp', 'cluster', 'up', '-i', 'x.ini']; main()",
            str(REPO),
            sysconfig.get_paths()["purelib"],
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install ansible-core" in proc.stderr


def snapshot_source(dest: Path) -> Path:
    """A copy of this checkout's tracked and unignored files: the playbook builds its wheel from it, so
    edits made while the test runs cannot make the second converge see a different wheel."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # what an earlier build leaves behind of a module since deleted: it must not ship in the wheel
    (dest / "build/lib/xsharp").mkdir(parents=True)
    (dest / "build/lib/xsharp/stale_left_over.py").write_text("raise ImportError('stale')\n")
    return dest


def _molecule(step: str, env: dict) -> dict:
    t0 = time.monotonic()
    proc = subprocess.run([_tool("molecule"), step], cwd=ANSIBLE, capture_output=True, text=True, env=env, timeout=500)
    return {"rc": proc.returncode, "out": proc.stdout + proc.stderr, "seconds": time.monotonic() - t0}


@pytest.fixture(scope="module")
def converged():
    """molecule's default scenario (molecule/default): converge, idempotence, verify; cleanup at the end."""
    _tool("molecule")
    # Short root: Ray's unix sockets live under its temp dir and paths are limited to 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="xs-", dir="/tmp"))
    base = _port_base()
    ports = {"ray": base, "exporter": base + 7}  # molecule/default/inventory/hosts.yml lays out base .. base+119
    env = {
        **os.environ,
        "XSHARP_MOLECULE_ROOT": str(root),
        "XSHARP_MOLECULE_PORT_BASE": str(base),
        "XSHARP_MOLECULE_SOURCE": str(snapshot_source(root / "src")),
        "NO_COLOR": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    runs: dict[str, dict] = {}
    try:
        for step in ("converge", "idempotence", "verify"):
            runs[step] = _molecule(step, env)
            if runs[step]["rc"] != 0:
                break
        yield {"prefix": root / "root", "ports": ports, "runs": runs}
    finally:
        cleanup = _molecule("cleanup", env)
        _kill_under(str(root))
        shutil.rmtree(root, ignore_errors=True)
        assert cleanup["rc"] == 0, cleanup["out"][-4000:]


def test_converge_then_idempotent(converged):
    runs = converged["runs"]
    first = runs["converge"]
    assert first["rc"] == 0, first["out"][-6000:]
    assert _recap(first["out"]).get("changed", 0) > 0
    again = runs.get("idempotence")
    assert again is not None and again["rc"] == 0, again["out"][-6000:] if again else "no idempotence run"
    recap = _recap(again["out"])
    assert recap.get("changed") == 0 and recap.get("failed") == 0, again["out"][-6000:]
    print(f"converge {first['seconds']:.1f}s, idempotence {again['seconds']:.1f}s, recap {recap}")


def test_molecule_verify(converged):
    verify = converged["runs"].get("verify")
    assert verify is not None and verify["rc"] == 0, verify["out"][-6000:] if verify else "no verify run"
    recap = _recap(verify["out"])
    assert recap.get("ok", 0) >= 8 and recap.get("failed") == 0, verify["out"][-6000:]


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
    assert not (Path(where.stdout.strip()).parent / "stale_left_over.py").exists()  # the build folder was cleared first


def test_monitoring_converged(converged):
    """The monitoring role wrote a Prometheus config that scrapes this exporter (promtool checked it
    during the converge) and pointed Debian's prometheus defaults at it."""
    prefix = converged["prefix"]
    config = (prefix / "etc/xsharp/monitoring/prometheus.yml").read_text()
    assert f"127.0.0.1:{converged['ports']['exporter']}" in config
    assert (prefix / "etc/xsharp/monitoring/rules").is_dir() and any((prefix / "etc/xsharp/monitoring/dashboards").glob("*.json"))
    assert f"--config.file={prefix}/etc/xsharp/monitoring/prometheus.yml" in (prefix / "etc/default/prometheus").read_text()
    assert oct((prefix / "etc/grafana/provisioning").stat().st_mode & 0o777) == "0o755"
    assert (prefix / "etc/grafana/provisioning/datasources/xsharp.yml").is_file()


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
    assert "xsharp_node_healthy" in body and "xsharp_node_health_check" in body
