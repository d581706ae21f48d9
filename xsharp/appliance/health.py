"""Node health in the spirit of NHC: a few checks, each pass or fail, the failing one named.

The checks use what the scrape already read (no extra NVML calls): the driver answered,
the GPUs NVML sees equal the GPUs expected, every GPU answered, every temperature is below
the limit, and every watched filesystem has enough free space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .host import DiskUsage

CHECKS = ("driver", "gpu_count", "gpus_responding", "gpu_temperature", "disk_free")

NVIDIA_PCI_VENDOR = "0x10de"
GPU_PCI_CLASSES = ("0x0300", "0x0302")  # VGA controller, 3D controller (NVSwitches are bridges: not counted)


@dataclass(frozen=True)
class HealthConfig:
    expected_gpus: int | None = None  # None: the NVIDIA GPUs on this node's PCI bus, counted at start
    max_gpu_temp_c: float = 85.0
    min_free_disk_percent: float = 10.0
    disk_paths: tuple[str, ...] = ("/",)


@dataclass(frozen=True)
class CheckResult:
    check: str
    ok: bool
    detail: str


def pci_gpu_count(devices: str | Path = "/sys/bus/pci/devices") -> int | None:
    """NVIDIA GPUs the kernel sees on the PCI bus, driver or not; None when sysfs is unreadable."""
    root = Path(devices)
    try:
        entries = list(root.iterdir())
    except OSError:
        return None
    n = 0
    for dev in entries:
        try:
            if (dev / "vendor").read_text().strip() == NVIDIA_PCI_VENDOR and (dev / "class").read_text().strip()[:6] in GPU_PCI_CLASSES:
                n += 1
        except OSError:
            continue
    return n


def evaluate(
    config: HealthConfig,
    *,
    expected_gpus: int | None,
    nvml_ok: bool,
    nvml_error: str,
    visible_gpus: int,
    silent_gpus: Sequence[int],
    temperatures: dict[int, float],
    disks: Sequence[DiskUsage],
    disk_errors: dict[str, str],
) -> list[CheckResult]:
    """One result per name in CHECKS. ``expected_gpus`` is already resolved (config or PCI count)."""
    results = []
    wants_gpus = bool(expected_gpus)
    if nvml_ok or not wants_gpus:
        results.append(CheckResult("driver", True, "NVML answered" if nvml_ok else "no GPU expected"))
    else:
        results.append(CheckResult("driver", False, f"{expected_gpus} GPU(s) expected but the NVIDIA driver does not answer: {nvml_error}"))

    if expected_gpus is None:
        results.append(CheckResult("gpu_count", True, f"{visible_gpus} visible, no expectation set"))
    else:
        ok = visible_gpus == expected_gpus
        results.append(CheckResult("gpu_count", ok, f"{visible_gpus} GPU(s) visible, {expected_gpus} expected"))

    silent = sorted(silent_gpus)
    results.append(CheckResult("gpus_responding", not silent, f"GPU(s) {', '.join(map(str, silent))} did not answer NVML" if silent else "every GPU answered"))

    hot = {i: t for i, t in sorted(temperatures.items()) if t >= config.max_gpu_temp_c}
    detail = ", ".join(f"GPU {i} at {t:g} C" for i, t in hot.items())
    results.append(
        CheckResult("gpu_temperature", not hot, f"{detail} (limit {config.max_gpu_temp_c:g} C)" if hot else f"all below {config.max_gpu_temp_c:g} C")
    )

    low = [f"{d.path} has {d.free_percent:.1f}% free" for d in disks if d.free_percent < config.min_free_disk_percent]
    low += [f"{path}: {why}" for path, why in disk_errors.items()]
    results.append(
        CheckResult(
            "disk_free",
            not low,
            f"{'; '.join(low)} (minimum {config.min_free_disk_percent:g}%)" if low else f"all above {config.min_free_disk_percent:g}% free",
        )
    )
    return results
