"""Seeded splits of a dataset's rows: a held-out share, stratified by class as scikit-learn's
``train_test_split`` makes it, or whole speakers held out for test."""

from __future__ import annotations

import fnmatch

import numpy as np

from xsharp.fileguard import DataError


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of ``draws`` rows each class gets: its share rounded down, the rest handed out
    by largest remainder, ties broken at random (scikit-learn's rule, so splits match it)."""
    continuous = counts / counts.sum() * draws
    floored = np.floor(continuous)
    need = int(draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add = min(len(inds), need)
            floored[rng.choice(inds, size=add, replace=False)] += 1
            need -= add
            if need == 0:
                break
    return floored.astype(int)


def split_rows(x, y, fraction: float, seed: int):
    """Hold out ``fraction`` of the rows (rounded up), stratified by class when every class has
    two rows or more. The rows are those ``sklearn.model_selection.train_test_split(x, y,
    test_size=fraction, random_state=seed, stratify=...)`` picks (tests check it); done here
    because importing scikit-learn costs most of a second in every worker."""
    if fraction <= 0:
        return x, y, x[:0], y[:0]
    n = len(y)
    n_test = int(np.ceil(fraction * n))
    if fraction >= 1 or n_test >= n:
        raise DataError(f"cannot hold out {fraction:g} of {n} rows: none would be left to train on")
    n_train = n - n_test
    rng = np.random.RandomState(seed)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        order = rng.permutation(n)
        test, train = order[:n_test], order[n_test:]
    else:
        if min(n_train, n_test) < len(classes):
            raise DataError(f"cannot hold out {fraction:g} of {n} rows: {n_test} held-out and {n_train} other rows cannot each hold all {len(classes)} classes")
        by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
        n_i = _approximate_mode(counts, n_train, rng)
        t_i = _approximate_mode(counts - n_i, n_test, rng)
        train_rows: list = []
        test_rows: list = []
        for i, rows in enumerate(by_class):
            shuffled = rows.take(rng.permutation(counts[i]), mode="clip")
            train_rows.extend(shuffled[: n_i[i]])
            test_rows.extend(shuffled[n_i[i] : n_i[i] + t_i[i]])
        train, test = rng.permutation(train_rows), rng.permutation(test_rows)
    return x[train], y[train], x[test], y[test]


def held_out_speakers(speakers: np.ndarray, test_speakers: list[str] | float, seed: int) -> list[str]:
    """The speakers whose every row goes to test: the names (or shell patterns) given, or a
    seeded share of them."""
    names = sorted({str(s) for s in speakers})
    if isinstance(test_speakers, (int, float)) and not isinstance(test_speakers, bool):
        if not 0 < test_speakers < 1:
            raise DataError(f"test_speakers: a share of speakers must lie in (0, 1), got {test_speakers}")
        if len(names) < 2:
            raise DataError(f"test_speakers: need at least 2 speakers to hold some out, found {len(names)}")
        k = min(max(1, int(round(test_speakers * len(names)))), len(names) - 1)
        picked = np.random.default_rng(seed).permutation(len(names))[:k]
        return sorted(names[i] for i in picked)
    held, unmatched = set(), []
    for pattern in map(str, test_speakers):  # a name, or a shell pattern: "*.m3" holds out voice m3 in every accent
        hits = fnmatch.filter(names, pattern)
        held.update(hits)
        if not hits:
            unmatched.append(pattern)
    if unmatched:
        raise DataError(f"test_speakers: {unmatched[:5]} match none of the data's speakers {names[:20]}")
    if held >= set(names):
        raise DataError("test_speakers: holding out every speaker leaves nothing to train on")
    return sorted(held)
