"""Datasets by name (``dataset: digits``) or by path and format (``path: x.npz``).

Loaders return arrays; :func:`load` splits them into train / validation / test with a seeded,
stratified split, so every worker and every rerun sees the same rows.
Add a named dataset to ``NAMED`` (:mod:`xsharp.data.named`) and a file format to ``FORMATS``
(:mod:`xsharp.data.formats`).

Every file a path names is opened through a :class:`~xsharp.fileguard.FileGuard`: anywhere for
`xsharp run`, under the server's data roots for a job of the service. An error names the file
and the problem, never what the file holds: a job's errors are shown to its user, and the file
may be one they could not read themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xsharp.fileguard import ANYWHERE, DataError, FileGuard

from .arrays import MAX_CLASSES, class_names
from .formats import FORMATS, format_of
from .named import NAMED
from .splits import held_out_speakers, split_rows


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str] = field(default_factory=list)
    test_speakers: list[str] = field(default_factory=list)  # speakers held out whole for test, if any
    pipeline: Any = None  # the fitted features.Pipeline that made x_* from the raw rows (None: raw)
    columns: list[str] = field(default_factory=list)  # tables: the name of each column of x
    first_missing: dict[str, int] = field(default_factory=dict)  # tables: column -> first data row (1-based) with no number
    skipped: int = 0  # files left out as unreadable (data.skip_bad)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    train = None  # in memory; a StreamedData (xsharp.data.stream) streams its training rows from shards

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name}: {len(self.y_train)} train, {len(self.y_val)} val, {len(self.y_test)} test, "
            f"shape {self.in_shape}, {self.n_classes} classes"
            + (f", {len(self.test_speakers)} speakers held out for test" if self.test_speakers else "")
            + (f", {self.skipped} unreadable files skipped" if self.skipped else "")
            + ")"
        )


def _labels(y: np.ndarray, classes: list[str] | None, where: str) -> tuple[np.ndarray, list[str]]:
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be one-dimensional, got shape {y.shape}")
    if classes is None:
        values = np.unique(y)
        if np.issubdtype(y.dtype, np.integer) and values.size and values.min() >= 0 and values.max() < MAX_CLASSES:
            classes = [str(i) for i in range(int(values.max()) + 1)]
            return y.astype(np.int64), classes
        return np.searchsorted(values, y).astype(np.int64), class_names(values, where)
    classes = class_names(classes, where)
    if not np.issubdtype(y.dtype, np.integer):  # names: map them onto the given classes
        index = {c: i for i, c in enumerate(classes)}
        unknown = {str(v) for v in y.tolist()} - set(index)
        if unknown:
            raise DataError(f"{where}: {len(unknown)} label value(s) are not among the {len(classes)} classes the data lists")
        return np.array([index[str(v)] for v in y.tolist()], dtype=np.int64), classes
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise DataError(f"{where}: labels must lie in 0..{len(classes) - 1}")
    return y.astype(np.int64), classes


def _as_rows(x: Any) -> np.ndarray:
    """Numbers become float32; strings (text rows) stay strings, for the spec's features to turn into numbers."""
    x = np.asarray(x)
    if x.dtype.kind in "OUS":
        return x.astype(object)
    return x.astype(np.float32, copy=False)


def load(
    dataset: str | None = None,
    path: str | Path | None = None,
    format: str | None = None,
    *,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    limit: int | None = None,
    seed: int = 0,
    test_speakers: list[str] | float | None = None,
    guard: FileGuard = ANYWHERE,
    **options: Any,
) -> Dataset:
    """Load a dataset by name or by path and split it reproducibly.

    ``test_fraction`` applies only when the source has no test split of its own;
    ``test_speakers`` (names, or a share of the speakers) holds out whole speakers for test
    instead; ``validation_fraction`` is taken from the training rows; ``limit`` keeps the first
    rows of a seeded shuffle (handy for quick runs). ``options`` go to the format's reader
    (``labels``, ``sample_rate``, ``duration``, ``label_column``, ``text_column``, ``size``,
    ``resize``, ``channels``, ``feature_columns``, ``skip_bad``). ``guard``
    decides which files a path may reach (a job of the service: its data roots).
    """
    if (dataset is None) == (path is None):
        raise DataError("give exactly one of dataset (a name) or path (a file)")
    options = {k: v for k, v in options.items() if v is not None}
    if dataset is not None:
        if dataset not in NAMED:
            raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(NAMED))}")
        arrays, name = NAMED[dataset](**options), dataset
    else:
        p = guard.as_given(path, "data.path")
        fmt = format or format_of(p, guard)
        if fmt not in FORMATS:
            raise DataError(f"{path}: cannot tell the format; set data.format to one of {', '.join(sorted(FORMATS))}")
        arrays, name = FORMATS[fmt](p, guard=guard, **options), p.name

    y, classes = _labels(arrays.y, arrays.classes, name)
    x = _as_rows(arrays.x)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{name}: {x.shape[0]} samples but {y.shape[0]} labels")
    order = np.random.default_rng(seed).permutation(len(y))
    if limit is not None:
        order = order[:limit]
    x, y = x[order], y[order]
    held: list[str] = []
    if test_speakers is not None:
        if arrays.speakers is None:
            raise DataError(f"{name}: test_speakers needs rows with speakers (a folder of {{label}}_{{speaker}}_{{index}}.wav files)")
        if arrays.x_test is not None:
            raise DataError(f"{name}: the data has its own test split; test_speakers cannot apply")
        speakers = np.asarray(arrays.speakers).astype(str)[order]
        held = held_out_speakers(speakers, test_speakers, seed)
        out = np.isin(speakers, held)
        x_test, y_test, x, y = x[out], y[out], x[~out], y[~out]
    elif arrays.x_test is not None:
        x_test = _as_rows(arrays.x_test)
        y_test, _ = _labels(arrays.y_test, classes, name)
    else:
        x, y, x_test, y_test = split_rows(x, y, test_fraction, seed)
    x_train, y_train, x_val, y_val = split_rows(x, y, validation_fraction, seed + 1)
    return Dataset(
        name,
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
        classes,
        held,
        columns=list(arrays.columns or []),
        first_missing=dict(arrays.first_missing or {}),
        skipped=arrays.skipped,
    )
