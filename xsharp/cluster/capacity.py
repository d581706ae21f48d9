"""What a job needs from the cluster and whether it fits: the one rule behind the queue's
rejections, the API's refusal at submit and the number of a search's trial slots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xsharp.spec import Resources as SpecResources


@dataclass(frozen=True)
class Resources:
    cpus: float = 0.0
    gpus: float = 0.0

    @classmethod
    def of_job(cls, res: SpecResources) -> Resources:
        """A job's whole worker group: ``workers`` x what each worker takes."""
        return cls(res.workers * res.cpus_per_worker, res.workers * res.gpus_per_worker)

    @classmethod
    def of_ray(cls, resources: Mapping[str, float]) -> Resources:
        """From ``ray.cluster_resources()`` or ``ray.available_resources()``."""
        return cls(resources.get("CPU", 0.0), resources.get("GPU", 0.0))

    def fits(self, need: Resources) -> bool:
        return need.cpus <= self.cpus + 1e-9 and need.gpus <= self.gpus + 1e-9

    def times(self, need: Resources, most: int) -> int:
        """How many of ``need`` fit side by side in these resources, at most ``most``."""
        return int(min(self.cpus // need.cpus if need.cpus else most, self.gpus // need.gpus if need.gpus else most))

    def __add__(self, o: Resources) -> Resources:
        return Resources(self.cpus + o.cpus, self.gpus + o.gpus)

    def __sub__(self, o: Resources) -> Resources:
        return Resources(self.cpus - o.cpus, self.gpus - o.gpus)

    def __str__(self) -> str:
        return f"{self.cpus:g} CPU" + (f" + {self.gpus:g} GPU" if self.gpus else "")


def never_fits(need: Resources, total: Resources) -> str | None:
    """Why ``need`` can never run on a cluster of ``total`` even when it is empty
    ("8 CPU; the cluster has 4 CPU in all"), or None when it can."""
    return None if total.fits(need) else f"{need}; the cluster has {total} in all"
