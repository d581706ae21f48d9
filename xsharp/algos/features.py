"""Preprocessing that travels with the model: the spec's ``data.features`` as a pipeline of steps.

Each step is fitted on the training rows only (a mean and variance, a vocabulary, word
vectors), then turns every split into numbers the model reads. The fitted pipeline is saved in
``model.npz`` beside the parameters, so ``xsharp predict`` applies exactly the same transform
to raw rows (waveforms, texts, images).

    data:
      path: data/spoken-digits
      features:
        - logmel: {n_mels: 40}
        - cmvn: {}

A step is ``{kind: options}``; ``kind`` is one of :data:`STEPS`. A step has ``fit(x, seed)``
(learns ``state``, a dict of arrays) and ``transform(x)``; steps without state ignore ``fit``.
The steps live by kind of row: :mod:`~xsharp.algos.numeric_steps` (numbers, tables),
:mod:`~xsharp.algos.audio_steps`, :mod:`~xsharp.algos.text_steps`; their base is
:mod:`~xsharp.algos.feature_step`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from xsharp import backend
from xsharp.fileguard import DataError

from .audio_steps import CMVN, MFCC, CMVNOptions, LogMel, LogMelOptions, MFCCOptions, StackFrames, StackFramesOptions
from .feature_step import SpecOptions, Step, StepOptions
from .image import augmented_copies
from .numeric_steps import Impute, ImputeOptions, OneHot, OneHotOptions, Standardize, StandardizeOptions, text_columns
from .text_steps import BagOfWords, BagOfWordsOptions, TfIdf, TfIdfOptions, VocabularyOptions, Word2Vec, Word2VecOptions

__all__ = [
    "CHUNK",
    "CMVN",
    "MFCC",
    "STEPS",
    "AugmentOptions",
    "BagOfWords",
    "BagOfWordsOptions",
    "CMVNOptions",
    "Impute",
    "ImputeOptions",
    "LogMel",
    "LogMelOptions",
    "MFCCOptions",
    "OneHot",
    "OneHotOptions",
    "Pipeline",
    "SpecOptions",
    "StackFrames",
    "StackFramesOptions",
    "Standardize",
    "StandardizeOptions",
    "Step",
    "StepOptions",
    "TfIdf",
    "TfIdfOptions",
    "VocabularyOptions",
    "Word2Vec",
    "Word2VecOptions",
    "prepare",
]

CHUNK = 512  # rows per transform call: bounds the memory of framed audio


STEPS: dict[str, type[Step]] = {cls.kind: cls for cls in (Standardize, LogMel, MFCC, CMVN, StackFrames, BagOfWords, TfIdf, Word2Vec, OneHot, Impute)}


# --------------------------------------------------------------------------- augmentation
class AugmentOptions(StepOptions):
    """Extra training rows: randomly shifted (and mirrored) copies of the training images."""

    copies: int = Field(1, ge=1, le=20, description="augmented copies of every training image added to the training rows")
    max_shift: int = Field(2, ge=0, le=16, description="largest shift in pixels, each way, in each direction")
    flip: bool = Field(False, description="mirror half the copies left-right")


# --------------------------------------------------------------------------- pipeline
class Pipeline:
    """Steps applied in order; fitted on the training rows, then applied to any rows."""

    def __init__(self, steps: list[Step], device: str = "cpu"):
        self.steps = steps
        self.device = device
        self.raw_shape: tuple[int, ...] | None = None  # one raw row's shape, as fitted (an export's input)

    @classmethod
    def from_spec(cls, items: list[Any], sample_rate: int | None = None, device: str = "cpu") -> Pipeline:
        """From the spec's ``features`` list (dicts, or validated spec items); audio steps with no
        ``sample_rate`` take the data's."""
        steps = []
        for item in items:
            if isinstance(item, BaseModel):
                item = item.model_dump()
            ((kind, options),) = item.items()
            options = dict(options or {})
            if kind not in STEPS:
                raise ValueError(f"unknown feature step {kind!r}; known: {', '.join(STEPS)}")
            if "sample_rate" in STEPS[kind].Options.model_fields and options.get("sample_rate") is None:
                options["sample_rate"] = sample_rate or 16000
            steps.append(STEPS[kind](options))
        return cls(steps, device)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __repr__(self) -> str:
        return "Pipeline(" + " -> ".join(map(repr, self.steps)) + ")"

    def fit(self, x: Any, seed: int = 0) -> np.ndarray:
        """Fit each step on the previous step's output of the training rows; returns them transformed."""
        for i, step in enumerate(self.steps):
            step.fit(x, backend.seed_of(seed, 0xFEA7, i), self.device)
            x = self._apply(step, x)
        return np.asarray(x, dtype=np.float32)

    def transform(self, x: Any) -> np.ndarray:
        for step in self.steps:
            x = self._apply(step, x)
        return np.asarray(x, dtype=np.float32)

    def _apply(self, step: Step, x: Any) -> Any:
        """One step over all rows, in chunks, on the pipeline's device where the step allows."""
        if len(x) == 0:  # run one blank row to learn the output shape
            x = np.asarray(x)
            if x.dtype == object:  # a text (""), or a table's row of missing values
                blank = np.array([""], dtype=object) if x.ndim == 1 else np.full((1, *x.shape[1:]), np.nan, dtype=object)
            else:
                blank = np.zeros((1, *x.shape[1:]), np.float32)
            return np.asarray(self._apply(step, blank))[:0]
        parts = []
        for lo in range(0, len(x), CHUNK):
            rows = x[lo : lo + CHUNK]
            if step.on_device:
                rows = backend.to_device(rows, self.device)
            out = np.asarray(backend.to_host(step.transform(rows)))
            parts.append(out if out.dtype == object else out.astype(np.float32, copy=False))  # object: a table impute left text in
        return np.concatenate(parts)

    # ----------------------------------------------------------------- persistence
    def describe(self) -> list[dict]:
        return [step.describe() for step in self.steps]

    def arrays(self, prefix: str = "features") -> dict[str, np.ndarray]:
        """Every step's fitted state as flat ``{prefix.i.name: array}`` (for ``np.savez``)."""
        return {f"{prefix}.{i}.{name}": a for i, step in enumerate(self.steps) for name, a in step.state.items()}

    @classmethod
    def restore(cls, described: list[dict], arrays: dict[str, np.ndarray], prefix: str = "features") -> Pipeline:
        pipeline = cls.from_spec(described)
        for i, step in enumerate(pipeline.steps):
            head = f"{prefix}.{i}."
            step.state = {k[len(head) :]: v for k, v in arrays.items() if k.startswith(head)}
        return pipeline


def _kind_of(item: Any) -> str:
    """The kind of a ``features`` item: a validated spec item, ``{kind: options}`` or ``kind``."""
    if isinstance(item, BaseModel):
        return next(iter(type(item).model_fields))
    return item if isinstance(item, str) else next(iter(item))


def _first_missing(x: np.ndarray) -> int | None:
    """The first column (of a table; else the first input value of a row) holding a NaN, if any."""
    if x.dtype == object:
        if x.ndim != 2:
            return None
        text = set(text_columns(x))
        return next((j for j in range(x.shape[1]) if j not in text and np.isnan(x[:, j].astype(np.float64)).any()), None)
    if x.dtype.kind != "f" or x.size == 0 or not np.isnan(x.sum()):  # one pass, no copy; a NaN anywhere makes the sum NaN
        return None
    flat = x.reshape(len(x), -1)
    missing = np.zeros(flat.shape[1], dtype=bool)
    for lo in range(0, len(flat), 4096):
        missing |= np.isnan(flat[lo : lo + 4096]).any(axis=0)
    return int(np.argmax(missing)) if missing.any() else None  # inf - inf gave the NaN sum: none missing


def _refuse_missing(data) -> None:
    """Missing numbers (NaN) need an ``impute`` step: name the column and its first data row."""
    for x in (data.x_train, data.x_val, data.x_test):
        j = _first_missing(x)
        if j is None:
            continue
        columns = getattr(data, "columns", None) or []
        fix = "add impute to data.features (e.g. - impute: {strategy: median})"
        if x.ndim == 2 and j < len(columns):
            row = (getattr(data, "first_missing", None) or {}).get(columns[j])
            where = f"in data row {row}" if row else "in some rows"
            raise DataError(f"{data.name}: column {columns[j]!r} has no value {where}; {fix}")
        raise DataError(f"{data.name}: the rows hold missing values (NaN), the first at input value {j} of a row; {fix}")


def prepare(data, features: list | None, augment: Any = None, *, seed: int = 0, sample_rate: int | None = None, device: str = "cpu"):
    """The dataset the model trains on: augmented training images, then ``features`` fitted on the
    training rows and applied to every split. The fitted pipeline rides along as ``data.pipeline``.

    Tables: text columns with no ``onehot`` step get one, first in the pipeline (it is saved
    with the model like the others); missing numbers (NaN, in any split) without an ``impute``
    step are refused, naming the column and its first data row."""
    features = list(features or [])
    kinds = [_kind_of(item) for item in features]
    if data.x_train.dtype == object and data.x_train.ndim == 2 and "onehot" not in kinds:
        features.insert(0, {"onehot": {}})
    if "impute" not in kinds:
        _refuse_missing(data)
    if not features and data.x_train.dtype == object:
        raise DataError(f"{data.name}: rows are texts; add data.features (tfidf, bow or word2vec) to turn them into numbers")
    if not features and augment is None:
        return data
    x_train, y_train = data.x_train, data.y_train
    if augment is not None:
        o = augment if isinstance(augment, AugmentOptions) else AugmentOptions.model_validate(augment)
        if x_train.dtype == object or x_train.ndim not in (3, 4):
            raise DataError(f"{data.name}: augment works on images (n, H, W) or (n, C, H, W); rows here have shape {x_train.shape[1:]}")
        x_train, y_train = augmented_copies(x_train, y_train, o.copies, seed, o.max_shift, o.flip)
    pipeline = Pipeline.from_spec(features or [], sample_rate, device)
    pipeline.raw_shape = tuple(int(d) for d in np.shape(x_train)[1:])
    try:
        x_train = pipeline.fit(x_train, seed)
        x_val, x_test = pipeline.transform(data.x_val), pipeline.transform(data.x_test)
    except (ValueError, TypeError, IndexError) as e:  # e.g. text steps on images, a frame longer than the waveform
        # numpy's and the steps' own words may quote a row ("could not convert string to float: '...'")
        raise DataError(
            f"{data.name}: data.features: the steps cannot take these rows ({type(e).__name__}; rows of shape {data.x_train.shape[1:]}, {data.x_train.dtype})"
        ) from None
    return dataclasses.replace(data, x_train=x_train, y_train=y_train, x_val=x_val, x_test=x_test, pipeline=pipeline if pipeline else None)
