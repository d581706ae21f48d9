"""Fair share over recent usage, as in Slurm's multifactor priority: each user's resource-seconds,
decayed with a half-life, order the users within a priority (the least recent user first).

A job holding ``c`` CPUs and ``g`` GPUs from ``s`` to ``e`` adds, as of ``e``,

    c * integral_s^e 2^(-(e - t) / h) dt  =  c * h / ln 2 * (1 - 2^(-(e - s) / h))

CPU-seconds (and the same in GPU-seconds), and everything a user held before decays by
``2^(-dt / h)``: usage a half-life old counts half. Users are compared by their dominant
share of the cluster's resource-seconds, ``max(cpu_seconds / cpus, gpu_seconds / gpus)``,
the decayed form of the DRF share the queue used before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HALF_LIFE = 86400.0  # seconds: yesterday's usage counts half


def decay(dt: float, half_life: float) -> float:
    """What one resource-second counts for ``dt`` seconds later."""
    return 2.0 ** (-max(dt, 0.0) / half_life)


def held(seconds: float, half_life: float) -> float:
    """Decayed seconds of a resource held for ``seconds``, as of the end of the hold."""
    seconds = max(seconds, 0.0)
    if seconds < 1e-6 * half_life:  # the integral's first-order term: exact to a millionth
        return seconds
    return half_life / math.log(2.0) * (1.0 - decay(seconds, half_life))


@dataclass(frozen=True)
class Usage:
    """One user's decayed resource-seconds, as of ``as_of``."""

    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    as_of: float = 0.0

    def at(self, t: float, half_life: float) -> Usage:
        """The same usage seen from ``t`` (later: decayed)."""
        f = decay(t - self.as_of, half_life)
        return Usage(self.cpu_seconds * f, self.gpu_seconds * f, max(t, self.as_of))

    def plus_hold(self, cpus: float, gpus: float, start: float, end: float, half_life: float) -> Usage:
        """With ``cpus`` and ``gpus`` held from ``start`` to ``end`` added, as of ``end``."""
        now = self.at(end, half_life)
        s = held(end - start, half_life)
        return Usage(now.cpu_seconds + cpus * s, now.gpu_seconds + gpus * s, now.as_of)

    def share(self, cpus: float, gpus: float) -> float:
        """Dominant share of a cluster of ``cpus`` and ``gpus``, in cluster-seconds."""
        return max(self.cpu_seconds / cpus if cpus else 0.0, self.gpu_seconds / gpus if gpus else 0.0)
