"""Host CPU, memory and disk, read from /proc and statvfs on each scrape (no psutil)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")  # /proc/stat order


@dataclass(frozen=True)
class DiskUsage:
    path: str
    size_bytes: int
    free_bytes: int  # available to unprivileged users (statvfs f_bavail), as `df` shows

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free_bytes / self.size_bytes if self.size_bytes else 0.0


def cpu_seconds(proc: str | Path = "/proc") -> dict[str, float]:
    """Seconds all CPUs together spent in each mode since boot (the aggregate `cpu` line)."""
    with open(Path(proc) / "stat") as f:
        first = f.readline().split()
    if not first or first[0] != "cpu":
        raise ValueError(f"{proc}/stat: first line is not the cpu total")
    hz = os.sysconf("SC_CLK_TCK")
    return {mode: int(ticks) / hz for mode, ticks in zip(CPU_MODES, first[1:])}


def memory_bytes(proc: str | Path = "/proc") -> dict[str, int]:
    """MemTotal, MemAvailable, SwapTotal and SwapFree in bytes (the keys this kernel reports)."""
    wanted = {"MemTotal", "MemAvailable", "SwapTotal", "SwapFree"}
    out: dict[str, int] = {}
    with open(Path(proc) / "meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in wanted:
                parts = rest.split()
                out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def load_average(proc: str | Path = "/proc") -> tuple[float, float, float]:
    with open(Path(proc) / "loadavg") as f:
        one, five, fifteen = f.read().split()[:3]
    return float(one), float(five), float(fifteen)


def disk_usage(path: str) -> DiskUsage:
    st = os.statvfs(path)
    return DiskUsage(path, st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)
