"""Hybrid parallel: G groups x K stages, model parallel inside a group, data parallel across
groups. It is the pipeline mode with ``parallel.groups`` > 1; see :mod:`.pipeline`."""

from __future__ import annotations

from .pipeline import PipelineMode


class HybridMode(PipelineMode):
    name = "hybrid"
