"""A small builder for an ONNX graph: nodes and initializers with unique names, float32 throughout.

Exporters append to one :class:`Graph` and hand each other tensor names:

    g = Graph()
    h = g.node("MatMul", [x, g.const(w, "dense0.w")])
    h = g.node("Add", [h, g.const(b, "dense0.b")])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

OPSET = 17


class ExportError(ValueError):
    """A model (or one of its feature steps) that ONNX cannot express exactly: the message names it."""


@dataclass
class Graph:
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    _names: set = field(default_factory=set)

    def name(self, hint: str) -> str:
        """A tensor or node name not used yet, from ``hint``."""
        base, n = hint.replace("/", "_"), 0
        out = base
        while out in self._names:
            n += 1
            out = f"{base}_{n}"
        self._names.add(out)
        return out

    def const(self, value: Any, hint: str = "const", dtype: Any = np.float32) -> str:
        """An initializer holding ``value`` (float32 unless ``dtype`` says otherwise); its name."""
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str | None = None, outputs: int = 1, **attrs: Any) -> str | list[str]:
        """Append ``op``; its output name (or names, with ``outputs`` > 1)."""
        from onnx import helper

        outs = [self.name(f"{hint or op.lower()}") for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(f"{hint or op}_node"), **attrs))
        return outs[0] if outputs == 1 else outs
