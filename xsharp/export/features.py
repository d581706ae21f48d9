"""ONNX for the fitted feature pipeline (``data.features``): one exporter per step kind.

:func:`export_steps` appends, to a :class:`~xsharp.export.graph.Graph`, the nodes that compute
exactly ``pipeline.transform`` on a float32 input ``[N, *raw_shape]`` and returns the output's
tensor name. Each step's exporter is the same arithmetic, in the same order and precision, as the
step's own ``transform``, with its fitted state as constants:

* ``standardize`` (``per: feature`` or ``global``): ``(x - mean) * inv_std``;
* ``impute`` on numbers: ``Where(IsNaN(x), fill, x)`` with the fitted per-value fill;
* ``cmvn``: mean (and variance) over the frames of each row (axis -2);
* ``stack_frames``: one ``Gather`` of the frames with the edges repeated, then a reshape;
* ``logmel`` / ``mfcc``: pre-emphasis, framing (a ``Gather``), the window, the real DFT as two
  matrix products computed in float64 (numpy's float32 FFT and ORT's differ by rounding only),
  the power spectrum, xsharp's own mel filterbank as a constant, the log with its floor, and for
  ``mfcc`` xsharp's DCT-II matrix;
* ``onehot`` on a table with no text column is the identity (number columns pass through).

Refused, with :class:`ExportError` naming ``data.features[i].<kind>``: the text steps (``bow``,
``tfidf``, ``word2vec``: xsharp's tokenizer, n-grams and vocabulary lookup have no exact
standard-opset form; ``StringNormalizer`` lowercases only and tokenisation needs contrib ops), and
``onehot`` / ``impute`` fitted on a table with text columns (the graph's input is float32).

Shapes are static: the raw row shape fixes the frame count of audio steps. A graph that takes
waveforms of another length must be exported again.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from xsharp.algos import audio

from .graph import ExportError, Graph

Shape = tuple[int, ...]
Exporter = Callable[[Graph, object, str, str, Shape], tuple[str, Shape]]

EXPORTERS: dict[str, Exporter] = {}


def exporter(kind: str):
    def register(fn: Exporter) -> Exporter:
        EXPORTERS[kind] = fn
        return fn

    return register


def refuse(where: str, why: str) -> ExportError:
    return ExportError(f"{where}: this step cannot be written in ONNX exactly ({why})")


def export_steps(graph: Graph, pipeline, input_name: str, raw_shape: tuple[int, ...]) -> str:
    """Append the nodes computing ``pipeline.transform`` on float32 ``[N, *raw_shape]``; the
    output tensor's name (``input_name`` itself for an empty pipeline).

    A refused step raises :class:`ExportError` after the steps before it have added their nodes:
    the caller drops the graph. The input must be float32 numbers: a pipeline whose first step saw
    float64 rows computes in float64 under numpy, so the two then agree to float32 rounding only."""
    x, shape = input_name, tuple(int(d) for d in raw_shape)
    for i, step in enumerate(getattr(pipeline, "steps", None) or []):
        where = f"data.features[{i}].{step.kind}"
        fn = EXPORTERS.get(step.kind)
        if fn is None:
            raise refuse(where, f"no ONNX exporter for {step.kind!r}")
        x, shape = fn(graph, step, where, x, shape)
    return x


def output_shape(pipeline, raw_shape: tuple[int, ...]) -> Shape:
    """The row shape ``export_steps`` produces for ``raw_shape`` (without building anything kept)."""
    shape = tuple(int(d) for d in raw_shape)
    scratch = Graph()
    x = "x"
    for i, step in enumerate(getattr(pipeline, "steps", None) or []):
        fn = EXPORTERS.get(step.kind)
        if fn is None:
            raise refuse(f"data.features[{i}].{step.kind}", f"no ONNX exporter for {step.kind!r}")
        x, shape = fn(scratch, step, f"data.features[{i}].{step.kind}", x, shape)
    return shape


_SAME_SHAPE = {"standardize", "impute", "cmvn"}


def raw_input_shape(pipeline, model_in_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The raw row shape the pipeline takes, where its fitted state or shape-keeping steps tell it;
    else ``None``.

    Steps that keep the row shape (``standardize``, ``impute``, ``cmvn``, ``onehot`` of a
    number-only table) pass ``model_in_shape`` back through; a ``standardize: {per: feature}`` or a
    ``onehot`` states its own input shape. Audio steps (``logmel``, ``mfcc``) and ``stack_frames``
    with ``stride`` > 1 cannot be inverted (many waveform lengths give the same frame count): there
    the caller must pass the shape of the raw training rows (``data.x_train.shape[1:]``, which is
    best saved with the model when it is trained)."""
    for step in getattr(pipeline, "steps", None) or []:
        if step.kind == "standardize" and step.options.per == "feature" and "mean" in step.state:
            return tuple(int(d) for d in np.shape(step.state["mean"]))
        if step.kind == "onehot" and "width" in step.state:
            return (int(step.state["width"]),) if not len(step.state.get("columns", [])) else None
        if step.kind in _SAME_SHAPE:
            continue
        return None  # logmel, mfcc, stack_frames change the shape; text steps take strings
    return tuple(int(d) for d in model_in_shape)


# --------------------------------------------------------------------------- generic
@exporter("standardize")
def _standardize(g: Graph, step, where: str, x: str, shape: Shape):
    mean, inv_std = np.asarray(step.state["mean"], np.float32), np.asarray(step.state["inv_std"], np.float32)
    if mean.ndim and mean.shape != shape[len(shape) - mean.ndim :]:
        raise refuse(where, f"fitted on rows of shape {mean.shape}, exported for rows of shape {shape}")
    h = g.node("Sub", [x, g.const(mean, f"{where}.mean")], f"{where}.centred")
    return g.node("Mul", [h, g.const(inv_std, f"{where}.inv_std")], f"{where}.out"), shape


@exporter("impute")
def _impute(g: Graph, step, where: str, x: str, shape: Shape):
    fill = np.asarray(step.state["fill"], np.float32)
    if np.isnan(fill).any():
        j = int(np.flatnonzero(np.isnan(fill))[0])
        raise refuse(where, f"fitted on a table whose column {j} holds text; the ONNX input is float32 numbers")
    if fill.size != math.prod(shape):
        raise refuse(where, f"fitted on rows of {fill.size} values, exported for rows of shape {shape}")
    missing = g.node("IsNaN", [x], f"{where}.missing")
    return g.node("Where", [missing, g.const(fill.reshape(shape), f"{where}.fill"), x], f"{where}.out"), shape


@exporter("onehot")
def _onehot(g: Graph, step, where: str, x: str, shape: Shape):
    columns = np.asarray(step.state.get("columns", []))
    if len(columns):
        raise refuse(
            where, f"columns {', '.join(map(str, columns.tolist()))} hold text; matching categories needs string inputs, and the graph takes float32 numbers"
        )
    width = int(step.state["width"])
    if shape != (width,):
        raise refuse(where, f"fitted on tables of {width} columns, exported for rows of shape {shape}")
    return x, shape  # a table of numbers passes through


def _refuse_text(g: Graph, step, where: str, x: str, shape: Shape):
    raise refuse(
        where,
        "it takes strings: xsharp's tokenizer, n-grams and vocabulary lookup have no exact form in the "
        "standard opset (StringNormalizer only changes case; tokenizing needs contrib ops)",
    )


for _kind in ("bow", "tfidf", "word2vec"):
    exporter(_kind)(_refuse_text)


# --------------------------------------------------------------------------- frames
def _frames_axis(where: str, shape: Shape, what: str) -> int:
    if len(shape) < 2:
        raise refuse(where, f"{what} works over the frames of rows (T, F); rows here have shape {shape}, so it would reach across the batch of rows")
    return len(shape) - 1  # axis of T in [N, *shape]


@exporter("cmvn")
def _cmvn(g: Graph, step, where: str, x: str, shape: Shape):
    axis = _frames_axis(where, shape, "cmvn")
    mean = g.node("ReduceMean", [x], f"{where}.mean", axes=[axis], keepdims=1)
    out = g.node("Sub", [x, mean], f"{where}.centred")
    if step.options.variance:
        # numpy's var: mean of the squared deviations; then / sqrt(var + eps), eps = 1e-5 (audio.cmvn)
        var = g.node("ReduceMean", [g.node("Mul", [out, out], f"{where}.sq")], f"{where}.var", axes=[axis], keepdims=1)
        std = g.node("Sqrt", [g.node("Add", [var, g.const(np.float32(1e-5), f"{where}.eps")], f"{where}.var_eps")], f"{where}.std")
        out = g.node("Div", [out, std], f"{where}.out")
    return out, shape


@exporter("stack_frames")
def _stack_frames(g: Graph, step, where: str, x: str, shape: Shape):
    axis = _frames_axis(where, shape, "stack_frames")
    t, c, s = shape[-2], step.options.context, step.options.stride
    centres = np.arange(0, t, s)
    index = np.clip(centres[:, None] + np.arange(-c, c + 1)[None, :], 0, t - 1)  # edges repeat
    stacked = g.node("Gather", [x, g.const(index, f"{where}.index", np.int64)], f"{where}.gather", axis=axis)
    rank = len(shape) + 1  # of x, with N
    out = g.node("Reshape", [stacked, g.const([0] * (rank - 1) + [-1], f"{where}.shape", np.int64)], f"{where}.out")
    return out, (*shape[:-2], len(centres), (2 * c + 1) * shape[-1])


# --------------------------------------------------------------------------- audio
def _slice(g: Graph, x: str, lo: int, hi: int, axis: int, hint: str) -> str:
    return g.node("Slice", [x, g.const([lo], f"{hint}.lo", np.int64), g.const([hi], f"{hint}.hi", np.int64), g.const([axis], f"{hint}.axis", np.int64)], hint)


def _log_mel(g: Graph, step, where: str, x: str, shape: Shape):
    if len(shape) != 1:
        raise refuse(where, f"exported for waveforms (samples,); rows here have shape {shape}")
    o = step._mel_options()
    rate, n_mels = int(o["sample_rate"]), int(o["n_mels"])
    samples = shape[0]
    a = o["pre_emphasis"]
    if a:  # y[0] = x[0]; y[t] = x[t] - a x[t-1], in float32 like numpy
        if samples > 1:
            prev = g.node("Mul", [_slice(g, x, 0, samples - 1, 1, f"{where}.prev"), g.const(np.float32(a), f"{where}.a")], f"{where}.a_prev")
            diff = g.node("Sub", [_slice(g, x, 1, samples, 1, f"{where}.next"), prev], f"{where}.diff")
            x = g.node("Concat", [_slice(g, x, 0, 1, 1, f"{where}.first"), diff], f"{where}.emphasised", axis=1)
    length = max(1, int(round(rate * o["frame_ms"] / 1000)))
    hop = max(1, int(round(rate * o["hop_ms"] / 1000)))
    n_fft = o["n_fft"] or 1 << (length - 1).bit_length()
    if samples < length:  # zero-padded to one frame
        x = g.node("Pad", [x, g.const([0, 0, 0, length - samples], f"{where}.pads", np.int64)], f"{where}.padded", mode="constant")
        samples = length
    t = audio.frame_count(samples, length, hop)
    index = hop * np.arange(t)[:, None] + np.arange(length)[None, :]
    framed = g.node("Gather", [x, g.const(index, f"{where}.frame_index", np.int64)], f"{where}.frames", axis=1)  # [N, T, L]
    w = audio.window("hann", length, np)
    windowed = g.node("Mul", [framed, g.const(w, f"{where}.window")], f"{where}.windowed")
    # rfft(frame, n=n_fft): frame cropped or zero-padded to n_fft; Re = sum x cos, Im = -sum x sin; in float64
    bins = n_fft // 2 + 1
    i = np.arange(min(length, n_fft), dtype=np.float64)[:, None]
    k = np.arange(bins, dtype=np.float64)[None, :]
    angle = 2 * np.pi * ((i * k) % n_fft) / n_fft
    cos, sin = np.zeros((length, bins)), np.zeros((length, bins))
    cos[: len(i)], sin[: len(i)] = np.cos(angle), -np.sin(angle)
    w64 = g.node("Cast", [windowed], f"{where}.windowed64", to=11)  # DOUBLE
    re = g.node("MatMul", [w64, g.const(cos, f"{where}.dft_cos", np.float64)], f"{where}.re")
    im = g.node("MatMul", [w64, g.const(sin, f"{where}.dft_sin", np.float64)], f"{where}.im")
    energy = g.node("Add", [g.node("Mul", [re, re], f"{where}.re2"), g.node("Mul", [im, im], f"{where}.im2")], f"{where}.energy")
    power = g.node(
        "Cast", [g.node("Div", [energy, g.const(np.float64(n_fft), f"{where}.n_fft", np.float64)], f"{where}.power64")], f"{where}.power", to=1
    )  # FLOAT
    bank = audio.mel_filterbank(n_mels, n_fft, rate, o["fmin"], o["fmax"])
    mel = g.node("MatMul", [power, g.const(bank.T, f"{where}.mel_bank")], f"{where}.mel")
    out = g.node("Log", [g.node("Add", [mel, g.const(np.float32(1e-10), f"{where}.floor")], f"{where}.mel_floor")], f"{where}.log_mel")
    return out, (t, n_mels), o


@exporter("logmel")
def _logmel(g: Graph, step, where: str, x: str, shape: Shape):
    out, shape, _ = _log_mel(g, step, where, x, shape)
    return out, shape


@exporter("mfcc")
def _mfcc(g: Graph, step, where: str, x: str, shape: Shape):
    o = step._mel_options()
    if o["n_mfcc"] > o["n_mels"]:
        raise refuse(where, f"n_mfcc ({o['n_mfcc']}) exceeds n_mels ({o['n_mels']})")
    lm, (t, n_mels), _ = _log_mel(g, step, where, x, shape)
    dct = audio.dct_matrix(n_mels, o["n_mfcc"])
    return g.node("MatMul", [lm, g.const(dct.T, f"{where}.dct")], f"{where}.out"), (t, int(o["n_mfcc"]))
