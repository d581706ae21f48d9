"""The steps of ``data.features`` on numbers and tables: standardisation, one-hot text columns
of a table, and missing numbers imputed."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from xsharp import backend

from .feature_step import Step, StepOptions


class StandardizeOptions(StepOptions):
    per: Literal["feature", "global"] = Field("feature", description="feature: a mean and variance per input value; global: one for all")
    eps: float = Field(1e-6, gt=0, le=1, description="added to the variance before the square root")


class Standardize(Step):
    kind = "standardize"
    summary = "subtract the training rows' mean and divide by their standard deviation"
    Options = StandardizeOptions
    on_device = True

    def fit(self, x, seed, device):
        x = np.asarray(x, dtype=np.float64)
        if self.options.per == "global":
            mean, var = np.array(x.mean()), np.array(x.var())
        else:
            mean, var = x.mean(axis=0), x.var(axis=0)
        self.state = {"mean": mean.astype(np.float32), "inv_std": (1.0 / np.sqrt(var + self.options.eps)).astype(np.float32)}

    def transform(self, x):
        xp = backend.xp_of(x)
        return (x - xp.asarray(self.state["mean"])) * xp.asarray(self.state["inv_std"])


def _numbers_only(column: np.ndarray) -> bool:
    return all(issubclass(t, (float, int, np.floating, np.integer)) and t is not bool for t in set(map(type, column)))


def text_columns(x: np.ndarray) -> list[int]:
    """The columns of a 2-D table that hold text: in an ``object`` table, those with any value
    that is not a number (a str, or None for a missing category)."""
    if x.dtype != object:
        return []
    return [j for j in range(x.shape[1]) if not _numbers_only(x[:, j])]


def _table(x: Any, kind: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{kind} works on tables (rows, columns); rows here have shape {x.shape[1:]}")
    return x


class OneHotOptions(StepOptions):
    max_categories: int = Field(1000, ge=1, le=65536, description="categories kept per text column, the most frequent in the training rows")


class OneHot(Step):
    """Each text column becomes one 0/1 column per category of the training rows (sorted by name;
    over ``max_categories``, the most frequent); a category the training rows lack, or a missing
    one, is all zeros. Number columns pass through, in their place."""

    kind = "onehot"
    summary = "tables: each text column -> one 0/1 column per category of the training rows; number columns pass through"
    Options = OneHotOptions

    def fit(self, x, seed, device):
        x = _table(x, self.kind)
        columns = text_columns(x)
        categories: list[np.ndarray] = []
        for j in columns:
            names, counts = np.unique(np.array([v for v in x[:, j] if isinstance(v, str)], dtype=str), return_counts=True)
            if len(names) > self.options.max_categories:  # the most frequent, ties by name, then back in name order
                names = names[np.sort(np.argsort(-counts, kind="stable")[: self.options.max_categories])]
            categories.append(names)
        self.state = {
            "width": np.array(x.shape[1], dtype=np.int64),
            "columns": np.array(columns, dtype=np.int64),
            "sizes": np.array([len(c) for c in categories], dtype=np.int64),
            "categories": np.concatenate(categories) if categories else np.array([], dtype=str),
        }
        self._lookup = None

    def _lookups(self) -> dict[int, tuple[dict[str, int], int]]:
        """Text column -> ({category: its output column, counted from the column's first}, count)."""
        if getattr(self, "_lookup", None) is None:
            names = [str(c) for c in self.state["categories"]]
            bounds = np.concatenate([[0], np.cumsum(self.state["sizes"])]).astype(int)
            self._lookup = {
                int(j): ({c: k for k, c in enumerate(names[bounds[i] : bounds[i + 1]])}, int(bounds[i + 1] - bounds[i]))
                for i, j in enumerate(self.state["columns"])
            }
        return self._lookup

    def transform(self, x):
        x = _table(x, self.kind)
        width = int(self.state["width"])
        if x.shape[1] != width:
            raise ValueError(f"onehot: rows of {x.shape[1]} columns; it was fitted on {width}")
        lookups = self._lookups()
        out = np.zeros((len(x), width - len(lookups) + int(self.state["sizes"].sum())), dtype=np.float32)
        k = 0
        for j in range(width):
            if j not in lookups:
                out[:, k] = x[:, j].astype(np.float32)
                k += 1
                continue
            index, size = lookups[j]
            hits = np.array([index.get(v, -1) if isinstance(v, str) else -1 for v in x[:, j]], dtype=np.int64)
            rows = np.flatnonzero(hits >= 0)
            out[rows, k + hits[rows]] = 1.0
            k += size
        return out


class ImputeOptions(StepOptions):
    strategy: Literal["mean", "median", "most_frequent", "constant"] = Field(
        "mean", description="what fills a missing value: the training rows' mean, median or most frequent value of its column, or `value`"
    )
    value: float = Field(0.0, ge=-1e30, le=1e30, description="constant: the value filled in; any strategy: a column with no value in the training rows")


class Impute(Step):
    """Missing numbers (NaN) replaced, per column (per input value of any row shape), by what
    ``strategy`` learns from the training rows. Text columns of a table pass untouched."""

    kind = "impute"
    summary = "missing numbers (NaN) -> each column's training mean, median, most frequent value or a constant"
    Options = ImputeOptions

    def _fill(self, column: np.ndarray) -> float:
        present = column[~np.isnan(column)]
        strategy = self.options.strategy
        if strategy == "constant" or present.size == 0:
            return self.options.value
        if strategy == "mean":
            return float(present.mean())
        if strategy == "median":
            return float(np.median(present))
        values, counts = np.unique(present, return_counts=True)
        return float(values[np.argmax(counts)])  # the smallest of the most frequent

    def fit(self, x, seed, device):
        x = np.asarray(x)
        if x.dtype == object:
            x = _table(x, self.kind)
            text = set(text_columns(x))
            fill = [np.nan if j in text else self._fill(x[:, j].astype(np.float64)) for j in range(x.shape[1])]
        else:
            flat = x.reshape(len(x), -1).astype(np.float64)
            fill = [self._fill(flat[:, j]) for j in range(flat.shape[1])]
        self.state = {"fill": np.array(fill, dtype=np.float32)}  # NaN: a text column, left alone

    def transform(self, x):
        x = np.asarray(x)
        fill = self.state["fill"]
        if x.dtype == object:
            out = _table(x, self.kind).copy()
            for j in np.flatnonzero(~np.isnan(fill)):
                column = out[:, j].astype(np.float64)
                out[:, j] = np.where(np.isnan(column), fill[j], column).tolist()
            return out
        flat = x.reshape(len(x), -1).astype(np.float32)
        return np.where(np.isnan(flat), fill, flat).reshape(x.shape)
