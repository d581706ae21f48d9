"""Pipeline model parallel (GPipe) and its hybrid with data parallel.

The model's modules are cut into K contiguous stages, one actor each, balanced by parameter
count unless ``parallel.partition`` says how many modules each stage holds. Every batch is cut
into ``parallel.micro_batches`` micro-batches that flow forward stage to stage and back: stage k
works on micro-batch m while stage k+1 works on m-1, so the stages are busy at once. The last
stage starts each micro-batch's backward pass as soon as its forward pass ends; every stage adds
the micro-batches' gradients, each weighted by its share of the batch, so a step applies the
gradient of the whole batch, as local training does (with one micro-batch, bit for bit).
Activations, their gradients and the step's random generator pass between stages through Ray.

Hybrid runs G such pipelines side by side (Tencent's worker groups): group g takes its share
of every batch, and after the backward pass each stage sums its gradient with the same stage of
the other groups (an allreduce among those G actors), so all groups apply the same update.

The driver runs the one training loop (``algos.training.run_phases``) and drives a step by
calling every stage; the loss comes back from the last stage. Greedy pretraining of a layer runs
on the stage that holds it: the stages before it pass the training inputs forward once, at the
start of the phase, and the owner (of every group) trains the layer alone. Validation passes the
validation rows through group 0's stages. Checkpoint states join the stages' slices, which are
contiguous in the flat layout, so they are the states local training writes. Batch
normalisation normalises with each micro-batch's statistics (as GPipe does).
"""

from __future__ import annotations

from itertools import accumulate, product
from typing import Any

import numpy as np
import ray

from xsharp import backend
from xsharp.algos import Model
from xsharp.algos.modules import nll_loss
from xsharp.algos.training import ModelEngine, Phase, Step, shard
from xsharp.spec import JobSpec

from .collective import CollectiveMember, RayCollective
from .execution import RunContext, RunResult, drive, host_plan
from .group import WorkerGroup, wait


def balance(sizes: list[int], stages: int) -> list[int]:
    """Modules per stage: contiguous runs, none empty, the largest stage's parameter count as
    small as it can be."""
    n = len(sizes)
    if not 1 <= stages <= n:
        raise ValueError(f"cannot cut {n} modules into {stages} stages")
    prefix = [0, *accumulate(sizes)]
    best = [[float("inf")] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0
    for k in range(1, stages + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):
                worst = max(best[k - 1][j], prefix[i] - prefix[j])
                if worst < best[k][i]:
                    best[k][i], cut[k][i] = worst, j
    counts, i = [], n
    for k in range(stages, 0, -1):
        counts.append(i - cut[k][i])
        i = cut[k][i]
    return counts[::-1]


class StageEngine(ModelEngine):
    """One stage of one group. Pretraining a layer of this stage and the optimiser step are
    ModelEngine's own (the collective joins the same stage of every group); the fine-tuning
    gradient flows through the pipeline."""

    overlap = False  # the fine-tuning gradient is this class's own (gradient), not loss_and_grad's

    def __init__(self, model: Model, data, collective: RayCollective, *, first: bool, last: bool, prev: Any, next: Any, micro_batches: int):
        super().__init__(model, data.x_train if first else None, data.y_train if last else None, collective)
        self.data, self.first, self.last = data, first, last
        self.prev, self.next, self.micro = prev, next, micro_batches
        self.mailbox = collective.mailbox
        self.inputs: Any = None  # this stage's inputs, relayed for pretraining one of its layers

    def send(self, actor: Any, key: tuple, value: Any) -> None:
        actor.deliver.remote(key, value)

    def take(self, key: tuple) -> Any:
        return self.mailbox.take(key, self.coll.timeout)

    def begin_phase(self, index: int, phase: Phase, optimizer_state: np.ndarray | None) -> None:
        pretraining = phase.layer is not None
        self.x = self.inputs if pretraining else (backend.to_device(self.data.x_train, self.model.device) if self.first else None)
        super().begin_phase(index, phase, optimizer_state)
        if not pretraining:  # what this stage reads of a batch: inputs (first), labels (last)
            self.fetch.source(*[a for a in (self.x, self.y) if a is not None])

    def gradient(self, step: Step, lo: int, hi: int, out: Any) -> float:
        if self.module is not None:
            return super().gradient(step, lo, hi, out)
        total, device = len(step.idx), self.model.device
        got = self.batch(step, lo, hi) if self.first or self.last else ()
        parts = [(lo + a, lo + b) for a, b in (shard(hi - lo, m, self.micro) for m in range(self.micro)) if b > a]
        out[...] = 0
        loss, caches = 0.0, []
        for m, (a, b) in enumerate(parts):
            if self.first:
                x, rng = got[0][a - lo : b - lo], step.rng(device, a)
            else:
                x, generator = self.take(("f", step.key, m))
                x, rng = backend.to_device(x, device), backend.RowRNG(generator, a, total)  # random numbers go on where the stage before left them
            y, cache = self.model.forward(x, train=True, rng=rng)
            if self.last:
                part_loss, dy = nll_loss(y, got[-1][a - lo : b - lo])
                weight = (b - a) / total
                loss += part_loss * weight
                self._backward(cache, dy * weight if weight != 1 else dy, out, ("b", step.key, m))
            else:
                self.send(self.next, ("f", step.key, m), (backend.to_host(y), rng.generator))
                caches.append(cache)
        for m, cache in enumerate(caches):
            self._backward(cache, backend.to_device(self.take(("b", step.key, m)), device), out, ("b", step.key, m))
        return loss

    def _backward(self, caches: list, dy: Any, out: Any, key: tuple) -> None:
        model = self.model
        for i in range(len(model.modules) - 1, -1, -1):
            if i == 0 and self.first:  # the data takes no gradient
                model.layout.pack(0, model.modules[0].backward_params(model.params[0], caches[0], dy), model.grad)
                break
            grads, dy = model.modules[i].backward(model.params[i], caches[i], dy)
            model.layout.pack(i, grads, model.grad)
        if not self.first:
            self.send(self.prev, key, backend.to_host(dy))
        out += model.grad

    def relay(self, token: tuple, rows: str, upto: int | None) -> float | None:
        """Pass all "train" or "val" rows forward. With ``upto`` (a module index of this stage
        or a later one) the pass ends at that module's stage, which keeps them as its inputs;
        without, the last stage returns the accuracy on the validation rows."""
        if self.first:
            x = backend.to_device(self.data.x_train if rows == "train" else self.data.x_val, self.model.device)
        else:
            x = backend.to_device(self.take(("r", token)), self.model.device)
        if upto is not None and upto < len(self.model.modules):
            self.inputs = x
            return None
        out = self.model.transform(x, len(self.model.modules))
        if not self.last:
            self.send(self.next, ("r", token), backend.to_host(out))
            return None
        return float((backend.to_host(out).argmax(axis=1) == self.data.y_val).mean())


@ray.remote
class PipelineStage(CollectiveMember):
    """Modules [first, first + len(layers)) of the model, for one group."""

    def setup(
        self,
        spec: JobSpec,
        data,
        layers: list,
        in_shape: tuple,
        flat: np.ndarray,
        first: int,
        group: int,
        stage: int,
        stages: int,
        prev: Any,
        next: Any,
        peers: list,
        micro_batches: int,
    ) -> dict:
        device = backend.resolve(spec.resources.device)
        self.model = Model(layers, in_shape, data.n_classes, seed=spec.seed, device=device, classes=data.classes)
        self.model.set_flat(flat)
        self.first = first
        collective = RayCollective(group, peers, self._mailbox())
        self.engine = StageEngine(self.model, data, collective, first=stage == 0, last=stage == stages - 1, prev=prev, next=next, micro_batches=micro_batches)
        nbytes = self.model.flat.nbytes
        return {
            "modules": [m.kind for m in self.model.modules],
            "parameters": int(self.model.layout.size),
            "parameter_bytes": int(nbytes),
            "training_bytes": int(nbytes * 3 + self.engine.buf.nbytes),  # parameters, gradient, momentum, exchange buffer
            "device": device,
        }

    def relay(self, token: tuple, rows: str, upto: int | None) -> float | None:
        return self.engine.relay(token, rows, None if upto is None else upto - self.first)

    def begin_phase(self, index: int, phase: Phase, optimizer_state: np.ndarray | None) -> None:
        if phase.layer is not None:  # this stage's module, in its own numbering
            layer = phase.layer - self.first
            phase = phase.restrict(layer, self.model.layout.module_slices[layer])
        else:
            phase = phase.restrict(None, slice(0, self.model.layout.size))
        self.engine.begin_phase(index, phase, optimizer_state)

    def step(self, step: Step) -> tuple[float, bool]:
        return self.engine.submit(step)

    def snapshot(self, engaged: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """The stage's parameters, and its optimiser state if it trains in the current phase."""
        return self.engine.snapshot() if engaged else (self.model.get_flat(), None)


class PipelineEngine:
    """The driver's side: every step calls the stages that train in the phase, in every group."""

    rank, depth = 0, 1

    def __init__(self, grid: list[list[Any]], module_bounds: list[int], flat_bounds: list[int]):
        self.grid, self.mb, self.fb = grid, module_bounds, flat_bounds
        self.stages = len(module_bounds) - 1
        self.engaged: list[int] = []
        self._tokens = 0

    def _wait(self, refs: list) -> list:
        return wait(refs, "pipeline stage")

    def start(self, flat: np.ndarray | None) -> None:
        pass  # the stages were built from the parameters to start from

    def begin_phase(self, index: int, phase: Phase, optimizer_state: np.ndarray | None) -> None:
        self.state_layout = phase.optimizer(None).state_layout
        if phase.layer is None:
            self.engaged = list(range(self.stages))
            parts = dict.fromkeys(self.engaged)
            if optimizer_state is not None:  # a resume: each stage its part of the optimiser state
                parts = dict(enumerate(self.state_layout.split(optimizer_state, self._sizes())))
        else:
            owner = next(s for s in range(self.stages) if self.mb[s] <= phase.layer < self.mb[s + 1])
            self.engaged, parts = [owner], {owner: optimizer_state}
            self._wait([group[s].relay.remote(("inputs", index), "train", phase.layer) for group in self.grid for s in range(owner + 1)])
        self._wait([group[s].begin_phase.remote(index, phase, parts[s]) for group, s in product(self.grid, self.engaged)])

    def submit(self, step: Step) -> tuple[list, bool]:
        return [group[s].step.remote(step) for group, s in product(self.grid, self.engaged)], step.stop

    def result(self, handle: tuple[list, bool]) -> tuple[float, bool]:
        refs, stop = handle
        outs = self._wait(refs)
        return outs[len(self.engaged) - 1][0], stop  # group 0's last engaged stage: the loss, summed over groups

    def validate(self, x: np.ndarray, y: np.ndarray) -> float | None:
        if not len(y):
            return None
        self._tokens += 1
        return self._wait([stage.relay.remote(("val", self._tokens), "val", None) for stage in self.grid[0]])[-1]

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        parts = self._wait([stage.snapshot.remote(s in self.engaged) for s, stage in enumerate(self.grid[0])])
        flat = np.concatenate([f for f, _ in parts])
        if len(self.engaged) == 1:
            return flat, parts[self.engaged[0]][1]
        return flat, self.state_layout.join([state for _, state in parts], self._sizes())

    def _sizes(self) -> list[int]:
        return [hi - lo for lo, hi in zip(self.fb, self.fb[1:])]

    def close(self) -> None:
        pass


class PipelineMode:
    name = "pipeline"
    needs_ray = True

    def run(self, spec: JobSpec, ctx: RunContext) -> RunResult:
        res, data = spec.resources, ctx.data
        groups, stages, micro = spec.groups, spec.stages, spec.parallel.micro_batches
        host, phases = host_plan(spec, ctx)
        slices = host.layout.module_slices
        counts = spec.parallel.partition or balance([sl.stop - sl.start for sl in slices], stages)
        mb = [0, *accumulate(counts)]
        fb = [slices[i].start if i < len(slices) else host.layout.size for i in mb]
        shapes, layers, flat = host.shapes(), host.layers, host.get_flat()
        ctx.say(f"placing {groups} x {stages} pipeline stages" if groups > 1 else f"placing {stages} pipeline stages")
        with WorkerGroup(
            PipelineStage, groups * stages, res.cpus_per_worker, res.gpus_per_worker, placement_group=ctx.placement_group, memory_limit=ctx.memory_limit
        ) as group:
            grid = [group.actors[g * stages : (g + 1) * stages] for g in range(groups)]
            data_ref = ray.put(data)
            setups = []
            for g, s in product(range(groups), range(stages)):
                row = grid[g]
                setups.append(
                    row[s].setup.remote(
                        spec,
                        data_ref,
                        layers[mb[s] : mb[s + 1]],
                        shapes[mb[s]],
                        flat[fb[s] : fb[s + 1]],
                        mb[s],
                        g,
                        s,
                        stages,
                        row[s - 1] if s > 0 else None,
                        row[s + 1] if s + 1 < stages else None,
                        [grid[h][s] for h in range(groups)],
                        micro,
                    )
                )
            infos = wait(setups, "pipeline setup")
            ctx.placed(group.actors)
            ctx.say(f"training: modules per stage {counts}, {micro} micro-batches" + (f", {groups} groups" if groups > 1 else ""))
            engine = PipelineEngine(grid, mb, fb)
            history = drive(engine, spec, ctx, phases)
            flat = engine.snapshot()[0]
        per_stage = [{k: v for k, v in info.items() if k != "device"} for info in infos[:stages]]
        extra = {"groups": groups, "stages": stages, "micro_batches": micro, "stage_memory": per_stage}
        return RunResult(flat, history, workers=groups * stages, device=infos[0]["device"], extra=extra)
