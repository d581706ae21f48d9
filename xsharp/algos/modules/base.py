"""The one Module interface every layer follows.

Modules are functional: parameters live outside the code as a dict of arrays, so a model's
parameters can be one flat buffer, and any list of modules stacks into a model.

    init(rng, in_shape)                 -> params            (host NumPy arrays)
    output_shape(in_shape)              -> shape of one output sample
    forward(params, x, train, rng)      -> (y, cache)
    backward(params, cache, dy)         -> (grads, dx)
    pretrain_step(params, x, rng)       -> (grads, reconstruction_error)   # unsupervised only
    statistics(params, x, labels)       -> flat sums over the rows         # closed-form (ELM) only:
    solve(params, summed_statistics)    -> (solved params, error)          #   see algos.training

Gradients are of the *mean* loss over the batch, ready for an optimiser to descend.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict


class Options(BaseModel):
    """A module's options, as written in a job spec under its name."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Module:
    kind: ClassVar[str]
    summary: ClassVar[str]
    Options: ClassVar[type[Options]] = Options

    def __init__(self, options: Options | dict | None = None):
        if isinstance(options, Options):
            self.options = options
        else:
            self.options = self.Options.model_validate(options or {})

    @property
    def pretrainable(self) -> bool:
        return hasattr(self, "pretrain_step")

    @property
    def solvable(self) -> bool:
        """Trained by a closed-form solve over summed statistics (a solve phase), not by steps."""
        return hasattr(self, "solve")

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError

    def init(self, rng: np.random.Generator, in_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def forward(self, params: dict, x: Any, train: bool = False, rng: Any = None) -> tuple[Any, Any]:
        raise NotImplementedError

    def backward(self, params: dict, cache: Any, dy: Any) -> tuple[dict, Any]:
        raise NotImplementedError

    def backward_params(self, params: dict, cache: Any, dy: Any) -> dict:
        """The parameters' gradients alone, for the first module of a stack (its input needs no
        gradient); modules whose dx costs a product override it to skip that product."""
        return self.backward(params, cache, dy)[0]

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.model_dump().items())
        return f"{self.kind}({opts})"


def flat_size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)
