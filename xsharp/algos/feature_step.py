"""A preprocessing step of ``data.features``: its options, as the spec writes them, and the
``fit`` / ``transform`` every step kind has (see :mod:`xsharp.algos.features`)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .modules.base import Options as SpecOptions


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
