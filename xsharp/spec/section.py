"""The base of every section of a job spec."""

from __future__ import annotations

from xsharp.algos.modules.base import SpecModel


class Section(SpecModel):
    """A section of the spec: strict, as module options are."""
