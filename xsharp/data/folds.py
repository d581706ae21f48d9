"""k-fold cross-validation: the rows of one fold of a data set's training and validation rows."""

from __future__ import annotations

import dataclasses

import numpy as np

from xsharp.fileguard import DataError


def cv_fold(data, fold: int, folds: int, seed: int):
    """The data set with fold ``fold`` of ``folds`` (stratified) of its training and validation
    rows as the validation rows, and the rest for training; the test rows are untouched."""
    from sklearn.model_selection import StratifiedKFold  # sklearn costs over a second to import; only a fold pays it

    if data.x_train is None:
        raise DataError("search.folds: cross-validation reshuffles the training rows, which needs them in memory; set data.stream: false")

    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    train, val = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))[fold]
    return dataclasses.replace(data, x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val])
