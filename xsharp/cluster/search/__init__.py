"""Parallel hyper-parameter search: a spec's search values (:mod:`xsharp.searchspec`) turned into
trials, run in parallel slots on Ray, and the best kept.

- ``space``: the trials, counted before they are built (grids, draws without replacement, the cap);
- ``asha``: asynchronous successive halving, which stops trials at rungs;
- ``driver``: :func:`run_search`, the trials in slots on Ray, resumable from search.json;
- ``result``: a search's trials and result, and the table search.json holds;
- ``plot``: search.png.

The names below are re-exported so that ``from xsharp.cluster.search import X`` keeps working;
the grammar's own names (``is_search``, ``split_space`` ...) live in :mod:`xsharp.searchspec`,
the folder helpers in :mod:`xsharp.files`, ``cv_fold`` in :mod:`xsharp.data.folds`.
"""

from xsharp.data.folds import cv_fold
from xsharp.files import load_files, save_files, save_table
from xsharp.searchspec import AUTO_PRIORS, MAX_DEPTH, Param, SearchSettings, is_search, settings_of, split_space

from .asha import ASHA
from .driver import SearchStopped, run_search
from .plot import figure, plot
from .result import SearchResult, Trial, snapshot
from .space import SearchSpace, TrialSpecs, draws, search_space, slots_for, too_many_samples, trial_specs

__all__ = [
    "ASHA",
    "AUTO_PRIORS",
    "MAX_DEPTH",
    "Param",
    "SearchResult",
    "SearchSettings",
    "SearchSpace",
    "SearchStopped",
    "Trial",
    "TrialSpecs",
    "cv_fold",
    "draws",
    "figure",
    "is_search",
    "load_files",
    "plot",
    "run_search",
    "save_files",
    "save_table",
    "search_space",
    "settings_of",
    "slots_for",
    "snapshot",
    "split_space",
    "too_many_samples",
    "trial_specs",
]
