"""The execution modes a job runs in: the one list every other part reads."""

from __future__ import annotations

from typing import Literal, get_args

Mode = Literal["local", "data_parallel", "param_server", "pipeline", "hybrid"]
MODES: tuple[str, ...] = get_args(Mode)
SOLVE_MODES = ("local", "data_parallel")  # the modes that run a closed-form solve (elm, elm_ae)
STAGED_MODES = ("pipeline", "hybrid")  # the modes that cut the model into stages (parallel.stages)
