"""A GPU as the exporter knows it between scrapes, and what one scrape read from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass
class GPU:
    """One GPU as enumerated: its handle, static identity and the state kept between scrapes."""

    index: int
    handle: Any
    uuid: str
    model: str
    pci_bus_id: str
    labels: tuple[str, ...]
    unsupported: set[str] = field(default_factory=set)
    xid_count: int = 0
    last_xid: int = 0
    gpm_samples: list[Any] | None = None  # [previous, current] when the GPU supports GPM
    gpm_request: Any = None
    gpm_taken_at: float | None = None
    gpm_values: dict[str, float] = field(default_factory=dict)


@dataclass
class GPUReading:
    gpu: GPU
    values: dict[str, float]
    pids: list[int] | None  # compute processes; None when the list could not be read
    answered: bool  # at least one read succeeded this scrape
    lost: bool  # NVML said the GPU fell off the bus
