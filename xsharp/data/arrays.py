"""What a reader of any format returns (:class:`Arrays`), and the bounds on the class names it may carry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xsharp.fileguard import DataError

MAX_CLASSES = 10_000  # distinct labels a data set may have: class names travel in every model
MAX_CLASS_NAME = 128  # characters of one class name


@dataclass
class Arrays:
    """What a loader returns: all rows (x, y) or, when the source splits them, train and test."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    classes: list[str] | None = None
    speakers: np.ndarray | None = None  # one name per row of x (WAV folders): test can hold out whole speakers
    skipped: int = 0  # files left out as unreadable (skip_bad)
    columns: list[str] | None = None  # tables: the name of each column of x
    first_missing: dict[str, int] | None = None  # tables: column -> first data row (1-based) with no number


def class_names(values, where: str) -> list[str]:
    """Class names are shown to the job's user and saved in its model: bounded in count (before a
    string is made of each) and in length."""
    if len(values) > MAX_CLASSES:
        raise DataError(f"{where}: {len(values)} distinct labels, over the cap of {MAX_CLASSES} classes (is data.label_column the right column?)")
    classes = [str(v) for v in values]
    longest = max((len(c) for c in classes), default=0)
    if longest > MAX_CLASS_NAME:
        raise DataError(f"{where}: a label of {longest} characters, over the cap of {MAX_CLASS_NAME} (is data.label_column the right column?)")
    return classes
