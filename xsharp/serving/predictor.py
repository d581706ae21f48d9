"""A trained model answering predictions: raw rows -> the saved preprocessing -> class
probabilities -> the top k classes. One Predictor serves every caller of a model; the job
service keeps the recently used ones in a :class:`PredictorCache`."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xsharp.algos import Model
from xsharp.export.onnx import ExportError, export_model

from .batcher import MicroBatcher
from .inputs import InputError, ModelInput, input_of

BATCH_BYTES = 64 << 20  # the raw rows of one micro-batch, at most (float32)
MAX_BATCH_ROWS = 256


@dataclass(frozen=True)
class ClassScore:
    index: int
    label: str
    probability: float


def top_k(proba: np.ndarray, classes: list[str], k: int) -> list[list[ClassScore]]:
    """Each row's ``k`` most probable classes, most probable first (ties: the lower index)."""
    k = max(1, min(int(k), proba.shape[1]))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return [[ClassScore(int(c), classes[c], float(row[c])) for c in idx] for row, idx in zip(proba, order)]


def onnx_session(model: Any, raw_shape: tuple[int, ...]) -> Any | None:
    """An onnxruntime session on ``model``'s ONNX export (its feature steps included), or None
    where the export is refused (a text or table step, say)."""
    import onnxruntime as ort

    try:
        proto = export_model(model, raw_shape=raw_shape if model.pipeline else None)
    except ExportError:
        return None
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are about its own graph optimisations
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


class Predictor:
    """``probabilities(raw_rows)``: what ``xsharp predict`` computes for those rows.

    Where the model exports to ONNX (every module, and every feature step but the text and
    table ones) it runs on onnxruntime: the export is checked against xsharp's own forward pass
    (tests/test_export.py: the same argmax, probabilities within 3e-6), and onnxruntime's
    kernels answer one row of the Fashion-MNIST CNN 6.7x sooner than NumPy's (0.093 against
    0.626 ms; bench/serve.py). The others run xsharp's NumPy forward pass."""

    def __init__(self, model: Any, engine: str = "auto"):
        """``engine``: onnxruntime, xsharp, or auto (onnxruntime where the model exports)."""
        self.model = model
        self.input: ModelInput = input_of(model)
        self.classes: list[str] = list(model.classes)
        exportable = self.input.kind not in ("text", "table")
        self.session = onnx_session(model, self.input.raw_shape) if engine != "xsharp" and exportable else None
        if engine == "onnxruntime" and self.session is None:
            raise ValueError("this model does not export to ONNX; use engine xsharp")
        self.engine = "onnxruntime" if self.session is not None else "xsharp"
        row_bytes = 4 * max(1, self.input.values)
        self.max_batch_rows = max(1, min(MAX_BATCH_ROWS, BATCH_BYTES // row_bytes))
        self.batcher = MicroBatcher(self.probabilities, self.max_batch_rows)

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        return cls(Model.load(path))

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, classes)`` for raw rows the model's input takes."""
        model, x = self.model, raw
        if self.session is not None:
            proba = self.session.run(["probabilities"], {"input": np.ascontiguousarray(raw, dtype=np.float32)})[0]
            return self._finite(proba)
        if model.pipeline is not None:
            try:
                x = model.pipeline.transform(x)
            except (ValueError, TypeError, IndexError):  # numpy's words may quote a row
                raise InputError("rows", f"the model's preprocessing ({', '.join(s.kind for s in model.pipeline.steps)}) cannot take these rows") from None
        x = np.asarray(x, dtype=np.float32)
        if int(np.prod(x.shape[1:])) != int(np.prod(model.in_shape)):
            raise InputError("rows", f"the model's features give rows of shape {list(x.shape[1:])}; its first module takes {list(model.in_shape)}")
        x = x.reshape((len(x), *model.in_shape))
        return self._finite(model.predict_proba(x, batch_size=self.max_batch_rows))

    @staticmethod
    def _finite(proba: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(proba).all(axis=1)
        if bad.any():
            raise InputError(f"rows[{int(np.flatnonzero(bad)[0])}]", "the model gives no finite probabilities for this row (a value far out of range?)")
        return proba

    async def predict(self, raw: np.ndarray, k: int) -> list[list[ClassScore]]:
        """The top ``k`` classes of each raw row, batched with whatever other callers asked at the
        same time."""
        return top_k(await self.batcher(raw), self.classes, k)


class PredictorCache:
    """The ``capacity`` most recently used predictors, by model file; a file replaced on disk (a
    newer mtime or size) is loaded again."""

    def __init__(self, capacity: int = 8):
        self.capacity = capacity
        self._entries: OrderedDict[Path, tuple[tuple[int, int], Predictor]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Path, threading.Lock] = {}  # one load a file at a time: callers that arrive meanwhile wait for it

    def cached(self, path: Path) -> Predictor | None:
        """The predictor of ``path`` if it is loaded and the file unchanged (a stat and a lookup:
        cheap enough for an event loop); None otherwise. Raises OSError where the file is gone."""
        stat = path.stat()
        with self._lock:
            hit = self._entries.get(path)
            if hit is not None and hit[0] == (stat.st_mtime_ns, stat.st_size):
                self._entries.move_to_end(path)
                return hit[1]
        return None

    def get(self, path: Path) -> Predictor:
        """The predictor of ``path``, loaded if need be. Raises OSError where the file is gone."""
        if (hit := self.cached(path)) is not None:
            return hit
        with self._lock:
            loading = self._loading.setdefault(path, threading.Lock())
        with loading:  # outside the cache's lock: a big model does not hold up the others
            if (hit := self.cached(path)) is not None:  # loaded while this caller waited
                return hit
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size)
            predictor = Predictor.load(path)
            with self._lock:
                self._entries[path] = (key, predictor)
                self._entries.move_to_end(path)
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
                self._loading.pop(path, None)
        return predictor
