"""ASHA: asynchronous successive halving (Li et al. 2018, and Ray Tune's stopping variant).

A trial is stopped at a rung (epochs r, r*eta, r*eta^2 ...) when its validation accuracy is below
the top 1/eta of those recorded there.
"""

from __future__ import annotations

import numpy as np


class ASHA:
    """Rungs at min_epochs * eta^k; a trial continues past a rung only in the top 1/eta there."""

    def __init__(self, max_epochs: int, reduction_factor: int, min_epochs: int):
        self.eta = reduction_factor
        self.rungs: dict[int, list[float]] = {}
        r = min_epochs
        while r < max_epochs:
            self.rungs[r] = []
            r *= reduction_factor

    def keep(self, epoch: int, metric: float) -> bool:
        if epoch not in self.rungs:
            return True
        seen = self.rungs[epoch]
        seen.append(metric)
        if len(seen) < self.eta:
            return True  # too few to judge
        return metric >= float(np.percentile(seen, 100 * (1 - 1 / self.eta)))
