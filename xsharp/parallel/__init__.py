"""Tier 2: parallel execution modes. Each runs the same model code; only the layout of workers differs."""

from .execution import ExecutionMode, RunContext, RunResult, get_mode, train_worker

__all__ = ["ExecutionMode", "RunContext", "RunResult", "get_mode", "train_worker"]
