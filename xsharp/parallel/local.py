"""Local mode: one worker, in this process, no Ray."""

from __future__ import annotations

from xsharp.spec import JobSpec

from .execution import RunContext, RunResult, train_worker


class LocalMode:
    name = "local"
    needs_ray = False

    def run(self, spec: JobSpec, ctx: RunContext) -> RunResult:
        model, history = train_worker(spec, ctx.data, hooks=ctx)
        return RunResult(model.get_flat(), history, workers=1, device=model.device)
