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
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field

from xsharp import backend

from .modules.base import Options as SpecOptions

CHUNK = 512  # rows per transform call: bounds the memory of framed audio


class StepOptions(SpecOptions):
    """A preprocessing step's options, as written under ``data.features`` (same rules as a module's)."""


class Step:
    kind: ClassVar[str]
    summary: ClassVar[str]
    Options: ClassVar[type[StepOptions]] = StepOptions
    on_device: ClassVar[bool] = False  # the transform is array code that runs on CuPy too

    def __init__(self, options: dict | StepOptions | None = None):
        self.options = options if isinstance(options, self.Options) else self.Options.model_validate(options or {})
        self.state: dict[str, np.ndarray] = {}

    def fit(self, x: Any, seed: int, device: str) -> None:
        """Learn ``state`` from the training rows (nothing for stateless steps)."""

    def transform(self, x: Any) -> Any:
        raise NotImplementedError

    def describe(self) -> dict:
        return {self.kind: self.options.model_dump()}

    def __repr__(self) -> str:
        return f"{self.kind}({', '.join(f'{k}={v}' for k, v in self.options.model_dump().items())})"


# --------------------------------------------------------------------------- generic
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


# --------------------------------------------------------------------------- audio
class LogMelOptions(StepOptions):
    sample_rate: int | None = Field(None, ge=1000, le=384_000, description="of the waveforms; default: data.sample_rate")
    n_mels: int = Field(40, gt=0, le=512, description="mel bands")
    frame_ms: float = Field(25.0, gt=0, le=1000, description="frame length in milliseconds")
    hop_ms: float = Field(10.0, gt=0, le=1000, description="step between frames in milliseconds")
    n_fft: int | None = Field(None, gt=0, le=65536, description="FFT size; default: the next power of two above the frame")
    fmin: float = Field(20.0, ge=0, le=192_000, description="lowest band edge in Hz")
    fmax: float | None = Field(None, gt=0, le=192_000, description="highest band edge in Hz; default: half the sample rate")
    pre_emphasis: float = Field(0.97, ge=0, lt=1, description="first-order high-pass coefficient; 0 turns it off")


class LogMel(Step):
    kind = "logmel"
    summary = "log mel-band energies of 25 ms frames: waveforms (n, samples) -> (n, frames, n_mels)"
    Options = LogMelOptions
    on_device = True

    def _mel_options(self) -> dict:
        o = self.options.model_dump()
        return {"sample_rate": o.pop("sample_rate") or 16000, **o}

    def transform(self, x):
        from . import audio

        return audio.log_mel(x, **self._mel_options())


class MFCCOptions(LogMelOptions):
    n_mfcc: int = Field(13, gt=0, le=512, description="cepstral coefficients kept (DCT of the log-mel bands)")


class MFCC(LogMel):
    kind = "mfcc"
    summary = "MFCCs (DCT of log-mel): waveforms (n, samples) -> (n, frames, n_mfcc)"
    Options = MFCCOptions

    def transform(self, x):
        from . import audio

        return audio.mfcc(x, **self._mel_options())


class CMVNOptions(StepOptions):
    variance: bool = Field(True, description="divide by the standard deviation too, not only subtract the mean")


class CMVN(Step):
    kind = "cmvn"
    summary = "per-utterance mean (and variance) normalisation of each coefficient over time"
    Options = CMVNOptions
    on_device = True

    def transform(self, x):
        from . import audio

        return audio.cmvn(x, self.options.variance)


class StackFramesOptions(StepOptions):
    context: int = Field(2, ge=0, le=50, description="neighbouring frames on each side stacked with each frame")
    stride: int = Field(1, ge=1, le=100, description="keep every stride-th stacked frame")


class StackFrames(Step):
    kind = "stack_frames"
    summary = "each frame with its neighbours: (n, T, F) -> (n, T / stride, (2 context + 1) F)"
    Options = StackFramesOptions
    on_device = True

    def transform(self, x):
        from . import audio

        return audio.stack_frames(x, self.options.context, self.options.stride)


# --------------------------------------------------------------------------- text
class VocabularyOptions(StepOptions):
    min_count: int = Field(2, ge=1, le=1_000_000_000, description="drop tokens seen fewer times in the training texts")
    max_size: int = Field(20000, gt=0, le=1_000_000, description="keep at most this many tokens, most frequent first")
    ngrams: int = Field(1, ge=1, le=3, description="1: words; 2: words and word pairs; 3: also triples")
    lowercase: bool = True


class _Text(Step):
    """Steps that tokenise and keep a vocabulary fitted on the training texts."""

    def _ids(self, texts) -> list[np.ndarray]:
        from .nlp import Vocabulary, tokenize

        if not hasattr(self, "_vocab"):
            self._vocab = Vocabulary([str(t) for t in self.state["tokens"]], self.state["counts"])
        o = self.options
        return [self._vocab.encode(tokenize(str(t), o.lowercase, o.ngrams)) for t in texts]

    def _fit_vocabulary(self, texts) -> list[np.ndarray]:
        from .nlp import Vocabulary, tokenize

        o = self.options
        vocab = Vocabulary.build((tokenize(str(t), o.lowercase, o.ngrams) for t in texts), o.min_count, o.max_size)
        if not len(vocab):
            raise ValueError(f"{self.kind}: no token occurs {o.min_count} times in the training texts; lower min_count")
        self._vocab = vocab
        self.state = {"tokens": np.array(vocab.tokens, dtype=str), "counts": vocab.counts}
        return self._ids(texts)


class BagOfWordsOptions(VocabularyOptions):
    binary: bool = Field(False, description="1 for a token present, instead of its count")


class BagOfWords(_Text):
    kind = "bow"
    summary = "texts -> token counts over the training vocabulary (n, vocabulary)"
    Options = BagOfWordsOptions

    def fit(self, x, seed, device):
        self._fit_vocabulary(x)

    def transform(self, x):
        from .nlp import bag_of_words

        return bag_of_words(self._ids(x), len(self.state["tokens"]), self.options.binary)


class TfIdfOptions(VocabularyOptions):
    sublinear: bool = Field(True, description="term frequency 1 + log(count) instead of the count")


class TfIdf(_Text):
    kind = "tfidf"
    summary = "texts -> L2-normalised TF-IDF rows over the training vocabulary (n, vocabulary)"
    Options = TfIdfOptions

    def fit(self, x, seed, device):
        from .nlp import bag_of_words, inverse_document_frequency

        ids = self._fit_vocabulary(x)
        self.state["idf"] = inverse_document_frequency(bag_of_words(ids, len(self.state["tokens"])))

    def transform(self, x):
        from .nlp import bag_of_words, tfidf

        return tfidf(bag_of_words(self._ids(x), len(self.state["tokens"])), self.state["idf"], self.options.sublinear)


class Word2VecOptions(VocabularyOptions):
    ngrams: Literal[1] = Field(1, description="word2vec learns vectors of single words")
    dim: int = Field(100, gt=0, le=4096, description="size of a word vector")
    window: int = Field(5, gt=0, le=50, description="largest distance between a word and its context words")
    negative: int = Field(5, gt=0, le=100, description="noise words per (word, context) pair")
    epochs: int = Field(5, gt=0, le=1000)
    learning_rate: float = Field(0.025, gt=0, le=10, description="start; falls linearly to zero")
    subsample: float = Field(1e-3, ge=0, le=1, description="frequent-word down-sampling threshold t; 0 turns it off")
    batch_size: int = Field(1024, gt=0, le=1_000_000, description="(word, context) pairs per update")
    weighting: Literal["mean", "tfidf"] = Field("mean", description="document vector: plain mean of its word vectors, or idf-weighted")


class Word2Vec(_Text):
    kind = "word2vec"
    summary = "texts -> averaged skip-gram word vectors trained on the training texts (n, dim)"
    Options = Word2VecOptions

    def fit(self, x, seed, device):
        from .nlp import bag_of_words, inverse_document_frequency, train_word2vec

        ids = self._fit_vocabulary(x)
        o = self.options
        size = len(self.state["tokens"])
        self.state["vectors"] = train_word2vec(
            ids, size, self.state["counts"], dim=o.dim, window=o.window, negative=o.negative, epochs=o.epochs,
            learning_rate=o.learning_rate, subsample=o.subsample, batch_size=o.batch_size, seed=seed, device=device,
        )
        self.state["idf"] = inverse_document_frequency(bag_of_words(ids, size))

    def transform(self, x):
        from .nlp import average_embeddings

        weights = self.state["idf"] if self.options.weighting == "tfidf" else None
        return average_embeddings(self._ids(x), self.state["vectors"], weights)


# --------------------------------------------------------------------------- tables
def _numbers_only(column: np.ndarray) -> bool:
    return all(issubclass(t, (float, int, np.floating, np.integer)) and t is not bool for t in set(map(type, column)))


def _text_columns(x: np.ndarray) -> list[int]:
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
        columns = _text_columns(x)
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
            text = set(_text_columns(x))
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


STEPS: dict[str, type[Step]] = {
    cls.kind: cls for cls in (Standardize, LogMel, MFCC, CMVN, StackFrames, BagOfWords, TfIdf, Word2Vec, OneHot, Impute)
}


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
    def from_spec(cls, items: list[Any], sample_rate: int | None = None, device: str = "cpu") -> "Pipeline":
        """From the spec's ``features`` list (dicts, or validated spec items); audio steps with no
        ``sample_rate`` take the data's."""
        steps = []
        for item in items:
            if isinstance(item, BaseModel):
                item = item.model_dump()
            (kind, options), = item.items()
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
    def restore(cls, described: list[dict], arrays: dict[str, np.ndarray], prefix: str = "features") -> "Pipeline":
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
        text = set(_text_columns(x))
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
    from .datasets import DataError

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
    from .datasets import DataError

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
        from .image import augmented_copies

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
        raise DataError(f"{data.name}: data.features: the steps cannot take these rows ({type(e).__name__}; rows of shape {data.x_train.shape[1:]}, {data.x_train.dtype})") from None
    return dataclasses.replace(data, x_train=x_train, y_train=y_train, x_val=x_val, x_test=x_test, pipeline=pipeline if pipeline else None)
