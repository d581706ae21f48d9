"""A model is a stack of modules over one flat parameter buffer.

Any list of modules stacks, so mixed models (RBM -> auto-encoder -> softmax) need no code of
their own. The last module is the classifier head (softmax, log-probabilities out).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from xsharp import backend
from xsharp.files import write_atomic

from .datasets import Dataset
from .features import Pipeline
from .flat import FlatLayout
from .modules import Module, build, nll_loss, with_classes
from .modules.base import flat_size

FORMAT_VERSION = 1


def count_parameters(layers: list[dict[str, dict]], in_shape: tuple[int, ...], n_classes: int) -> int:
    """The size of ``Model(layers, in_shape, n_classes)``'s flat parameter buffer, from the modules'
    parameter shapes alone: nothing is allocated, however large the layers. Raises ValueError
    where the model could not be built (a window larger than its input, say)."""
    total, shape = 0, tuple(int(d) for d in in_shape)
    for item in layers:
        ((kind, options),) = item.items()
        module = build(kind, with_classes(kind, options, n_classes))
        total += sum(flat_size(s) for s in module.param_shapes(shape).values())
        shape = module.output_shape(shape)
    return total


class Model:
    def __init__(
        self,
        layers: list[dict[str, dict]],
        in_shape: tuple[int, ...] | None = None,
        n_classes: int | None = None,
        *,
        data: Dataset | None = None,
        seed: int = 0,
        device: str = "cpu",
        classes: list[str] | None = None,
        dtype: Any = backend.DTYPE,
    ):
        """``layers`` is the spec's model list: ``[{"rbm": {"hidden": 256}}, ..., {"softmax": {}}]``.

        The input shape, the number of classes and their names come from ``data`` (a
        :class:`~xsharp.algos.datasets.Dataset`, as ``datasets.load`` returns) or are given as
        ``in_shape``, ``n_classes`` and ``classes``; what is given wins over what ``data`` says."""
        if data is not None:
            in_shape = data.in_shape if in_shape is None else in_shape
            n_classes = data.n_classes if n_classes is None else n_classes
            classes = list(data.classes) if classes is None and len(data.classes) == n_classes else classes
            self.pipeline = data.pipeline  # the fitted preprocessing of data's rows: saved with the model
        if in_shape is None or n_classes is None:
            raise TypeError("Model needs the input's shape and the number of classes: Model(layers, data=dataset) or Model(layers, in_shape, n_classes)")
        self.device = backend.resolve(device)
        self.xp = backend.xp(self.device)
        self.in_shape = tuple(int(d) for d in in_shape)
        self.n_classes = int(n_classes)
        self.classes = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
        self.modules: list[Module] = []
        for item in layers:
            ((kind, options),) = item.items()
            self.modules.append(build(kind, with_classes(kind, options, self.n_classes)))

        host_rng = np.random.default_rng(backend.seed_of(seed, 0x1217))
        host_params, shapes, shape = [], [], self.in_shape
        for module in self.modules:
            params = module.init(host_rng, shape)
            host_params.append(params)
            shapes.append({name: a.shape for name, a in params.items()})
            shape = module.output_shape(shape)
        self.out_shape = shape

        self.layout = FlatLayout(shapes, [getattr(m, "non_trainable", ()) for m in self.modules])
        self.flat = self.xp.zeros(self.layout.size, dtype=dtype)
        self.params = self.layout.views(self.flat)
        for m, params in enumerate(host_params):
            self.layout.pack(m, {k: self.xp.asarray(v) for k, v in params.items()}, self.flat)
        self.grad = self.xp.zeros_like(self.flat)

    @classmethod
    def for_data(cls, layers: list[dict[str, dict]], data: Dataset, *, seed: int = 0, device: str = "cpu", dtype: Any = backend.DTYPE) -> Model:
        """A model of ``layers`` that reads ``data``'s rows and names its classes:
        ``Model.for_data([{"dense": {"units": 64}}, {"softmax": {}}], datasets.load("digits"))``."""
        return cls(layers, data=data, seed=seed, device=device, dtype=dtype)

    # ----------------------------------------------------------------- description
    @property
    def layers(self) -> list[dict[str, dict]]:
        return [{m.kind: m.options.model_dump()} for m in self.modules]

    def shapes(self) -> list[tuple[int, ...]]:
        """Output shape of every module, input first."""
        out, shape = [self.in_shape], self.in_shape
        for m in self.modules:
            shape = m.output_shape(shape)
            out.append(shape)
        return out

    def __repr__(self) -> str:
        stack = " -> ".join(repr(m) for m in self.modules)
        return f"Model({stack}; {self.layout.size} parameters on {self.device})"

    # ----------------------------------------------------------------- compute
    def forward(self, x: Any, train: bool = False, rng: Any = None, upto: int | None = None) -> tuple[Any, list]:
        """Run modules ``0 .. upto-1`` (all by default); returns the output and the caches."""
        caches = []
        for module, params in zip(self.modules[:upto], self.params[:upto]):
            x, cache = module.forward(params, x, train, rng)
            caches.append(cache)
        return x, caches

    def loss_and_grad(self, x: Any, labels: Any, rng: Any = None, out: Any = None, packed: Any = None) -> tuple[Any, Any]:
        """Mean NLL over the batch (a 0-d array on the model's device); the gradient is written into ``out`` (a flat buffer of the
        model's size; ``self.grad`` by default) and returned. ``packed(m, loss)``, if given, is
        called as soon as module m's gradients are in (last module first), so a data-parallel
        worker can start sending them while the rest of the backward pass runs."""
        grad = self.grad if out is None else out
        logp, caches = self.forward(x, train=True, rng=rng)
        loss, dy = nll_loss(logp, labels)
        for m in range(len(self.modules) - 1, 0, -1):
            grads, dy = self.modules[m].backward(self.params[m], caches[m], dy)
            self.layout.pack(m, grads, grad)
            if packed is not None:
                packed(m, loss)
        self.layout.pack(0, self.modules[0].backward_params(self.params[0], caches[0], dy), grad)  # no dx: the input takes no gradient
        if packed is not None:
            packed(0, loss)
        return loss, grad

    def transform(self, x: Any, upto: int, batch_size: int = 2048) -> Any:
        """Outputs of the first ``upto`` modules for a whole array, on this model's device."""
        x = backend.to_device(x, self.device)
        if upto == 0:
            return x
        parts = [self.forward(x[i : i + batch_size], upto=upto)[0] for i in range(0, x.shape[0], batch_size)]
        return self.xp.concatenate(parts) if parts else x[:0]

    def predict_log_proba(self, x: Any, batch_size: int = 2048) -> np.ndarray:
        return backend.to_host(self.transform(x, len(self.modules), batch_size))

    def predict_proba(self, x: Any, batch_size: int = 2048) -> np.ndarray:
        return np.exp(self.predict_log_proba(x, batch_size))

    def predict(self, x: Any, batch_size: int = 2048) -> np.ndarray:
        return self.predict_log_proba(x, batch_size).argmax(axis=1)

    def accuracy(self, x: Any, y: Any) -> float:
        if y is None:  # a split of an imported dataset, read shard by shard (xsharp.data.stream.ShardedSplit)
            return x.accuracy(self)
        if len(y) == 0:
            return float("nan")
        return float((self.predict(x) == backend.to_host(y)).mean())

    # ----------------------------------------------------------------- parameters
    def get_flat(self) -> np.ndarray:
        return backend.to_host(self.flat).copy()

    def set_flat(self, values: Any) -> None:
        values = self.xp.asarray(values, dtype=self.flat.dtype).reshape(-1)
        if values.shape[0] != self.layout.size:
            raise ValueError(f"expected {self.layout.size} parameters, got {values.shape[0]}")
        self.flat[...] = values  # in place: module views stay valid

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | Path, spec: dict | None = None) -> Path:
        """Write parameters, architecture, the fitted preprocessing (``pipeline``) and
        (optionally) the job spec to one ``.npz`` file."""
        path = Path(path)
        meta = {
            "format": FORMAT_VERSION,
            "layers": self.layers,
            "in_shape": list(self.in_shape),
            "n_classes": self.n_classes,
            "classes": self.classes,
            "spec": spec,
        }
        state = {}
        if self.pipeline is not None:
            meta["features"] = self.pipeline.describe()
            if getattr(self.pipeline, "raw_shape", None) is not None:
                meta["raw_shape"] = list(self.pipeline.raw_shape)
            state = self.pipeline.arrays("features")
        buf = io.BytesIO()
        np.savez(buf, params=self.get_flat(), meta=np.array(json.dumps(meta)), **state)
        write_atomic(path, buf.getvalue())  # a crash never leaves a half-written model
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Model:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            params = data["params"]
            state = {k: data[k] for k in data.files if k.startswith("features.")}
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported model format {meta.get('format')!r}")
        model = cls(meta["layers"], tuple(meta["in_shape"]), meta["n_classes"], device=device, classes=meta["classes"])
        model.set_flat(params)
        model.spec = meta.get("spec")
        if meta.get("features"):  # files from before preprocessing was saved have none
            model.pipeline = Pipeline.restore(meta["features"], state, "features")
            model.pipeline.raw_shape = tuple(meta["raw_shape"]) if meta.get("raw_shape") else None
        return model

    spec: dict | None = None
    pipeline: Any = None  # a fitted features.Pipeline: raw rows -> the inputs this model reads
