"""A trained xsharp model as an ONNX model (opset :data:`~xsharp.export.graph.OPSET`).

    input          float32 [N, *shape]   raw rows when the model has feature steps (the
                                         pipeline's input), else the model's input shape
    probabilities  float32 [N, C]        softmax of the head's logits
    label          int64   [N]           argmax of the probabilities

The class names are in the model's metadata (``metadata_props``: ``classes``, a JSON list).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xsharp import __version__
from xsharp.algos import Model
from xsharp.data.rows import load_rows
from xsharp.files import write_atomic

from .features import export_steps
from .graph import OPSET, ExportError, Graph
from .modules import export_module

INPUT, PROBABILITIES, LABEL = "input", "probabilities", "label"


@dataclass
class Verification:
    rows: int
    argmax_agree: float  # share of rows (0..1) whose ONNX label is xsharp's
    max_prob_diff: float  # largest |p_onnx - p_xsharp| over all rows and classes


def raw_rows(model: Any, split: str = "test") -> np.ndarray:
    """The raw rows (before feature steps) of a split of the data the model was trained on,
    read from its saved spec as ``xsharp predict`` reads them."""
    d = (model.spec or {}).get("data") or {}
    source = d.get("dataset") or d.get("path")
    if not source:
        raise ExportError("the model carries no spec naming its data: cannot tell the shape of its raw rows")
    return load_rows(source, split, model.spec).x


def export_model(model: Any, raw_shape: tuple[int, ...] | None = None) -> Any:
    """``model`` (an :class:`xsharp.algos.Model`) as a checked ``onnx.ModelProto``.

    With feature steps (``model.pipeline``) the graph starts with them and ``input`` takes raw
    rows of ``raw_shape`` (default: read off the model's training data, see :func:`raw_rows`).
    Raises ExportError naming a module or step ONNX cannot express."""
    import onnx
    from onnx import TensorProto, helper

    if not model.modules or model.modules[-1].kind != "softmax":
        last = model.modules[-1].kind if model.modules else "nothing"
        raise ExportError(f"the model ends in {last!r}, not a softmax head: no probabilities to export")
    g = Graph()
    g.name(INPUT), g.name(PROBABILITIES), g.name(LABEL)  # reserved
    pipeline = model.pipeline if model.pipeline else None
    if pipeline is not None:
        if raw_shape is None and getattr(pipeline, "raw_shape", None) is not None:
            raw_shape = pipeline.raw_shape  # saved with the model since it was trained
        if raw_shape is None:  # a model saved before raw shapes were: read it off its training data
            raw_shape = raw_rows(model, "test").shape[1:]
        in_shape = tuple(int(d) for d in raw_shape)
        x = export_steps(g, pipeline, INPUT, in_shape)
        x = g.node("Reshape", [x, g.const([-1, *model.in_shape], "model_in_shape", dtype=np.int64)])  # as predict reshapes
    else:
        in_shape, x = model.in_shape, INPUT

    shape = model.in_shape
    for module, params in zip(model.modules, model.params):
        x = export_module(g, module, params, x, shape)
        shape = module.output_shape(shape)
    g.nodes.append(helper.make_node("Identity", [x], [PROBABILITIES], name=g.name("probabilities_node")))
    g.nodes.append(helper.make_node("ArgMax", [PROBABILITIES], [LABEL], name=g.name("label_node"), axis=1, keepdims=0))

    n_classes = int(model.out_shape[0])
    graph = helper.make_graph(
        g.nodes,
        "xsharp",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["N", n_classes]), helper.make_tensor_value_info(LABEL, TensorProto.INT64, ["N"])],
        initializer=g.initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="xsharp", producer_version=__version__)
    proto.ir_version = min(proto.ir_version, 8)  # readable by onnxruntime releases from 1.14 on
    meta = {
        "classes": json.dumps(list(model.classes)),
        "xsharp_layers": json.dumps(model.layers),
        "xsharp_in_shape": json.dumps(list(model.in_shape)),
    }
    if pipeline is not None:
        meta["xsharp_features"] = json.dumps(pipeline.describe())
    onnx.helper.set_model_props(proto, meta)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"the exported graph does not check: {e}") from None
    return proto


def load_model(run_dir: str | Path) -> Model:
    run_dir = Path(run_dir)
    path = run_dir / "model.npz" if run_dir.is_dir() else run_dir
    if not path.exists():
        raise FileNotFoundError(f"{path}: no model here (train one with `xsharp run SPEC --out DIR`)")
    return Model.load(path)


def export_run(run_dir: str | Path, out_path: str | Path) -> Path:
    """The model of a run folder (written by ``xsharp run --out``) to ``out_path`` as ONNX."""

    proto = export_model(load_model(run_dir))
    out_path = Path(out_path)
    write_atomic(out_path, proto.SerializeToString())
    return out_path


def model_inputs(model: Any, x: np.ndarray) -> np.ndarray:
    """What xsharp's model reads for raw rows ``x``: the pipeline's output, in the model's shape."""
    if model.pipeline:
        x = model.pipeline.transform(x)
    x = np.asarray(x)
    return x.reshape((x.shape[0], *model.in_shape)).astype(np.float32)


def verify(model: Any, onnx_path: str | Path, x: np.ndarray, batch_size: int = 4096) -> Verification:
    """Run the ONNX file with onnxruntime (CPU) on rows ``x`` (raw rows when the model has
    feature steps) and compare with ``model.predict_proba``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    x = np.asarray(x)
    if len(x) == 0:
        return Verification(0, float("nan"), float("nan"))
    feed = x if x.dtype.kind in "OUS" else x.astype(np.float32)
    if not model.pipeline:
        feed = feed.reshape((feed.shape[0], *model.in_shape))
    parts = [session.run([PROBABILITIES, LABEL], {INPUT: feed[i : i + batch_size]}) for i in range(0, len(feed), batch_size)]
    p_onnx = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([lab for _, lab in parts])
    p_ref = model.predict_proba(model_inputs(model, x))
    return Verification(
        rows=int(len(x)),
        argmax_agree=float((labels == p_ref.argmax(axis=1)).mean()),
        max_prob_diff=float(np.abs(p_onnx - p_ref).max()),
    )
