"""A search's trials and its result, and the table search.json holds of them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from xsharp.searchspec import SearchSettings


@dataclass
class Trial:
    id: int
    params: dict
    state: str = "PENDING"  # PENDING RUNNING SUCCEEDED STOPPED (early) FAILED
    metric: float | None = None  # validation accuracy at the last epoch run
    test_accuracy: float | None = None
    epochs: int = 0  # fine-tuning epochs run
    seconds: float = 0.0
    error: str | None = None
    curve: list = field(default_factory=list)  # validation accuracy per epoch
    fold_metrics: list = field(default_factory=list)  # with folds: validation accuracy of each finished fold


@dataclass
class SearchResult:
    trials: list[Trial]
    params: list[str]
    best: Trial | None
    seconds: float
    trial_epochs: int

    def table(self) -> list[dict]:
        return [asdict(t) | {"curve": None} for t in self.trials]


def snapshot(trials: list[Trial], params: list[str], settings: SearchSettings, seconds: float, best: Trial | None = None) -> dict:
    """The search as search.json holds it: settings, parameter names, every trial so far."""
    return {"settings": settings.model_dump(), "params": params, "seconds": seconds, "best": best.id if best else None, "trials": [asdict(t) for t in trials]}
