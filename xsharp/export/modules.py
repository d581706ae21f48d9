"""Per-module ONNX exporters: each writes one module's inference form into a :class:`Graph`.

An exporter is ``(graph, module, params, input_name, in_shape) -> output_name``: ``params`` are
the module's parameters as host NumPy arrays (float32), ``input_name`` a tensor of shape
``[N, *in_shape]``, and the output a tensor of shape ``[N, *module.output_shape(in_shape)]``.
Each computes what the module's ``forward(train=False)`` computes, in the same order of
float32 operations where that order matters (sigmoid as 0.5 (tanh(z / 2) + 1), batch norm
as gamma * ((x - mean) * inv_std) + beta, ...).

The softmax head outputs *probabilities* (the softmax of its logits), not xsharp's
log-probabilities: that is what an ONNX classifier hands out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from xsharp import backend
from xsharp.algos.modules.sparse_coding import normalise_rows

from .graph import ExportError, Graph

Exporter = Callable[[Graph, Any, dict, str, tuple], str]
EXPORTERS: dict[str, Exporter] = {}


def exporter(kind: str) -> Callable[[Exporter], Exporter]:
    def register(fn: Exporter) -> Exporter:
        EXPORTERS[kind] = fn
        return fn

    return register


def export_module(graph: Graph, module: Any, params: dict, input_name: str, in_shape: tuple) -> str:
    """The module's output tensor name; ExportError naming a kind no exporter knows."""
    fn = EXPORTERS.get(module.kind)
    if fn is None:
        raise ExportError(f"module {module.kind!r}: no ONNX exporter for this kind (known: {', '.join(sorted(EXPORTERS))})")
    host = {k: np.asarray(_to_host(v), dtype=np.float32) for k, v in params.items()}
    return fn(graph, module, host, input_name, tuple(int(d) for d in in_shape))


def _to_host(a: Any) -> np.ndarray:
    return backend.to_host(a)


# --------------------------------------------------------------------------- helpers
def activation(graph: Graph, name: str, x: str) -> str:
    """xsharp's activations (:mod:`xsharp.algos.modules.activations`), same arithmetic."""
    if name == "sigmoid":  # 0.5 * (tanh(0.5 z) + 1): xsharp's overflow-free form
        half = graph.const(0.5, "half")
        t = graph.node("Tanh", [graph.node("Mul", [x, half])])
        return graph.node("Mul", [graph.node("Add", [t, graph.const(1.0, "one")]), half], hint="sigmoid")
    if name == "relu":
        return graph.node("Relu", [x])
    if name == "tanh":
        return graph.node("Tanh", [x])
    if name == "linear":
        return x
    raise ExportError(f"activation {name!r}: no ONNX form")


def flatten(graph: Graph, x: str, in_shape: tuple) -> str:
    """(N, *in_shape) -> (N, prod(in_shape)) in C order, as ``x.reshape(n, -1)``."""
    return x if len(in_shape) == 1 else graph.node("Flatten", [x], axis=1)


def reshape(graph: Graph, x: str, shape: tuple, hint: str = "shape") -> str:
    """(N, ...) -> (N, *shape), the batch dimension kept symbolic."""
    return graph.node("Reshape", [x, graph.const([-1, *shape], hint, dtype=np.int64)])


def affine(graph: Graph, x: str, in_shape: tuple, W: np.ndarray, b: np.ndarray | None, hint: str) -> str:
    z = graph.node("MatMul", [flatten(graph, x, in_shape), graph.const(W, f"{hint}.W")])
    return z if b is None else graph.node("Add", [z, graph.const(b, f"{hint}.b")])


def as_images(graph: Graph, x: str, in_shape: tuple) -> str:
    """(N, H, W) -> (N, 1, H, W); (N, C, H, W) unchanged."""
    if len(in_shape) == 2:
        return graph.node("Unsqueeze", [x, graph.const([1], "axis1", dtype=np.int64)])
    if len(in_shape) == 3:
        return x
    raise ExportError(f"image input of shape {in_shape}: expected (C, H, W) or (H, W)")


def conv(graph: Graph, x: str, in_shape: tuple, W: np.ndarray, b: np.ndarray, stride: int, padding: int, hint: str) -> str:
    k = int(W.shape[2])
    return graph.node(
        "Conv",
        [as_images(graph, x, in_shape), graph.const(W, f"{hint}.W"), graph.const(b, f"{hint}.b")],
        kernel_shape=[k, k],
        strides=[stride, stride],
        pads=[padding] * 4,
    )


# --------------------------------------------------------------------------- exporters
@exporter("dense")
def _dense(graph, module, params, x, in_shape):
    return activation(graph, module.options.activation, affine(graph, x, in_shape, params["W"], params["b"], "dense"))


@exporter("softmax")
def _softmax(graph, module, params, x, in_shape):
    logits = affine(graph, x, in_shape, params["W"], params["b"], "softmax")
    return graph.node("Softmax", [logits], axis=1)


@exporter("dropout")
def _dropout(graph, module, params, x, in_shape):
    return x  # inverted dropout: the identity at evaluation


@exporter("batchnorm")
def _batchnorm(graph, module, params, x, in_shape):
    c = params["gamma"].shape[0]
    inv_std = (1 / np.sqrt(params["running_var"] + np.float32(module.options.eps))).astype(np.float32)

    def col(a, hint):  # (C, 1) broadcasts over (N, C, pixels)
        return graph.const(np.asarray(a, np.float32)[:, None], hint)

    xr = graph.node("Reshape", [x, graph.const([0, c, -1], "bn.shape", dtype=np.int64)])
    xhat = graph.node("Mul", [graph.node("Sub", [xr, col(params["running_mean"], "bn.mean")]), col(inv_std, "bn.inv_std")])
    y = graph.node("Add", [graph.node("Mul", [col(params["gamma"], "bn.gamma"), xhat]), col(params["beta"], "bn.beta")])
    return reshape(graph, y, in_shape, "bn.out_shape")


@exporter("conv2d")
def _conv2d(graph, module, params, x, in_shape):
    o = module.options
    return activation(graph, o.activation, conv(graph, x, in_shape, params["W"], params["b"], o.stride, o.padding, "conv2d"))


def _pool(op: str):
    def export(graph, module, params, x, in_shape):
        size, stride = module.options.size, module.stride
        y = graph.node(op, [as_images(graph, x, in_shape)], kernel_shape=[size, size], strides=[stride, stride])  # no padding, floor
        if len(in_shape) == 2:  # the output keeps the input's rank
            y = graph.node("Squeeze", [y, graph.const([1], "axis1", dtype=np.int64)])
        return y

    return export


# xsharp pools over the windows that fit (no padding, floor); its average is the sum / size^2,
# which is AveragePool's mean when no padding enters a window.
EXPORTERS["maxpool"] = _pool("MaxPool")
EXPORTERS["avgpool"] = _pool("AveragePool")


@exporter("rbm")
def _rbm(graph, module, params, x, in_shape):
    return activation(graph, "sigmoid", affine(graph, x, in_shape, params["W"], params["b_h"], "rbm"))  # p(h = 1 | v)


@exporter("autoencoder")
def _autoencoder(graph, module, params, x, in_shape):
    return activation(graph, module.options.activation, affine(graph, x, in_shape, params["W"], params["b"], "autoencoder"))  # the encoder


@exporter("elm")
def _elm(graph, module, params, x, in_shape):
    h = activation(graph, module.options.activation, affine(graph, x, in_shape, params["W"], params["b"], "elm"))
    return graph.node("MatMul", [h, graph.const(params["beta"], "elm.beta")])


@exporter("elm_ae")
def _elm_ae(graph, module, params, x, in_shape):
    z = affine(graph, x, in_shape, np.ascontiguousarray(params["beta"].T), None, "elm_ae")  # x beta^T
    return activation(graph, module.options.output_activation, z)


@exporter("crbm")
def _crbm(graph, module, params, x, in_shape):
    return activation(graph, "sigmoid", conv(graph, x, in_shape, params["W"], params["b_h"], module.options.stride, 0, "crbm"))


@exporter("sparse_coding")
def _sparse_coding(graph, module, params, x, in_shape):
    """The solver unrolled: a fixed number of ISTA/FISTA iterations over a fixed dictionary.

    The dictionary's normalised rows Dn, its Gram matrix G, the step 1/L and the threshold are
    constants of the trained model, computed here as xsharp computes them per batch (float32).
    FISTA's momentum weights (t - 1) / t_next depend on the iteration number only."""
    o = module.options
    if o.iterations > 1000:
        raise ExportError(f"module sparse_coding: {o.iterations} solver iterations are too many to unroll into an ONNX graph (at most 1000)")
    Dn, _ = normalise_rows(params["D"])
    Dn = Dn.astype(np.float32)
    G = Dn @ Dn.T
    step = (1 / np.linalg.eigvalsh(G)[-1]).astype(np.float32)
    threshold = np.float32(o.l1_weight * step)
    b = graph.node("MatMul", [flatten(graph, x, in_shape), graph.const(np.ascontiguousarray(Dn.T), "sc.DnT")])  # x Dn^T
    G_, step_, thr_, zero = graph.const(G, "sc.G"), graph.const(step, "sc.step"), graph.const(threshold, "sc.threshold"), graph.const(0.0, "zero")

    def prox_step(y: str | None) -> str:
        # soft_threshold(y - step * (y G - b), threshold); y = 0 (the start) gives y - step * (0 - b)
        grad = graph.node("Neg", [b]) if y is None else graph.node("Sub", [graph.node("MatMul", [y, G_]), b])
        v = graph.node("Mul", [step_, grad])
        v = graph.node("Neg", [v]) if y is None else graph.node("Sub", [y, v])
        shrunk = graph.node("Max", [graph.node("Sub", [graph.node("Abs", [v]), thr_]), zero])
        return graph.node("Mul", [graph.node("Sign", [v]), shrunk])

    if o.algorithm == "ista":
        z = None
        for _ in range(o.iterations):
            z = prox_step(z)
        return z
    z = y = None
    t = 1.0
    for _ in range(o.iterations):
        z_next = prox_step(y)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        diff = z_next if z is None else graph.node("Sub", [z_next, z])
        y = graph.node("Add", [z_next, graph.node("Mul", [graph.const(np.float32((t - 1) / t_next), "sc.momentum"), diff])])
        z, t = z_next, t_next
    return z
