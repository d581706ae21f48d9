"""Every module's maths on a device against the same maths on NumPy, in float32.

Each case runs one module on the CPU and on ``device`` from the same parameters, inputs and
random numbers (drawn on the host and copied, so CuPy's own generator plays no part), and
compares everything the training loop reads from it: the output in training and in evaluation,
the gradients and the input's gradient, the pretraining step's gradients and error, the ridge
statistics and the solved readout. The largest relative difference per case is the figure.

The tests run it on the strict stand-in (:mod:`xsharp.strict_xp`), where the difference must
be exactly zero and any implicit host transfer raises; ``scripts/gpu-check.sh`` runs it on CuPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xsharp import backend
from xsharp.algos.modules import build


@dataclass(frozen=True)
class Case:
    kind: str
    options: dict
    in_shape: tuple[int, ...]
    label: str = ""

    @property
    def name(self) -> str:
        return f"{self.kind}{'/' + self.label if self.label else ''}"


# At least one case per module, and one per code path a module takes (activation, persistence,
# solver, visible units, finetuning): small shapes, so the CPU side costs milliseconds.
CASES: list[Case] = [
    Case("dense", {"units": 6, "activation": "sigmoid"}, (5,), "sigmoid"),
    Case("dense", {"units": 6, "activation": "relu"}, (2, 3), "relu"),
    Case("dense", {"units": 6, "activation": "tanh"}, (5,), "tanh"),
    Case("softmax", {"units": 4}, (7,)),
    Case("dropout", {"rate": 0.3}, (8,)),
    Case("batchnorm", {}, (6,), "features"),
    Case("batchnorm", {}, (3, 4, 4), "channels"),
    Case("rbm", {"hidden": 5}, (6,), "cd1"),
    Case("rbm", {"hidden": 5, "k": 2, "persistent": True}, (6,), "pcd2"),
    Case("rbm", {"hidden": 5, "visible": "gaussian"}, (6,), "gaussian"),
    Case("autoencoder", {"hidden": 4, "sparsity_target": 0.1, "sparsity_weight": 0.5, "corruption": 0.2}, (6,), "sparse-denoising"),
    Case("sparse_coding", {"atoms": 5, "l1_weight": 0.05, "algorithm": "fista", "iterations": 50}, (6,), "fista"),
    Case("sparse_coding", {"atoms": 5, "l1_weight": 0.05, "algorithm": "ista", "iterations": 50}, (6,), "ista"),
    Case("conv2d", {"filters": 3, "kernel": 3, "padding": 1, "activation": "relu"}, (2, 6, 6)),
    Case("conv2d", {"filters": 2, "kernel": 3, "stride": 2, "activation": "tanh"}, (7, 7), "stride"),
    Case("maxpool", {"size": 2}, (2, 6, 6)),
    Case("maxpool", {"size": 3, "stride": 1}, (5, 5), "overlap"),
    Case("avgpool", {"size": 2}, (2, 6, 6)),
    Case("crbm", {"filters": 3, "kernel": 3}, (2, 6, 6)),
    Case("elm", {"hidden": 8, "outputs": 3, "finetune": True}, (6,)),
    Case("elm_ae", {"hidden": 4}, (6,)),
]


@dataclass
class ModuleCheck:
    """One case's comparison: what was compared, and the largest relative difference of each."""

    name: str
    differences: dict[str, float] = field(default_factory=dict)

    @property
    def largest(self) -> float:
        return max(self.differences.values(), default=0.0)


class SameDraws:
    """A generator for ``backend.RowRNG`` that draws on the host from a fixed seed and hands the
    numbers to ``device``: the CPU and device runs see the same random numbers."""

    def __init__(self, seed: int, device: str):
        self.generator, self.device = np.random.default_rng(seed), device

    def random(self, shape, dtype=np.float32):
        return backend.to_device(self.generator.random(shape, dtype=dtype), self.device, dtype)

    def standard_normal(self, shape, dtype=np.float32):
        return backend.to_device(self.generator.standard_normal(shape, dtype=dtype), self.device, dtype)


def relative_difference(a: Any, b: Any) -> float:
    """max |a - b| / max |a|, on the host, in float64 (0 for two empty or two zero arrays)."""
    a, b = (np.asarray(backend.to_host(v), dtype=np.float64) for v in (a, b))
    if a.shape != b.shape:
        return float("inf")
    scale = float(np.abs(a).max(initial=0.0))
    gap = float(np.abs(a - b).max(initial=0.0))
    return gap / scale if scale > 0 else gap


def _run(case: Case, device: str, seed: int) -> dict[str, Any]:
    """Everything a training loop reads from the module, computed on ``device``."""
    module = build(case.kind, case.options)
    host = np.random.default_rng(seed)
    params_host = module.init(host, case.in_shape)
    x_host = host.random((6, *case.in_shape), dtype=np.float32)
    labels_host = host.integers(0, 3, 6)
    params = {k: backend.to_device(v, device) for k, v in params_host.items()}
    x = backend.to_device(x_host, device)
    draws = lambda tag: backend.RowRNG(SameDraws(seed + tag, device))  # noqa: E731

    out: dict[str, Any] = {}
    y, cache = module.forward(params, x, train=True, rng=draws(1))
    out["forward(train)"] = y
    dy = backend.to_device(host.standard_normal(y.shape, dtype=np.float32), device)
    grads, dx = module.backward(params, cache, dy)
    out["backward dx"] = dx
    for name, g in grads.items():
        out[f"grad {name}"] = g
    for name, g in module.backward_params(params, cache, dy).items():
        out[f"grad {name} (params only)"] = g
    out["forward(eval)"] = module.forward(params, x, train=False)[0]
    if module.pretrainable:
        for step in (1, 2):  # twice: a persistent chain carries its state into the second step
            pgrads, error = module.pretrain_step(params, x, draws(10 + step))
            out[f"pretrain{step} error"] = np.float64(error)
            for name, g in pgrads.items():
                out[f"pretrain{step} {name}"] = g
    if module.solvable:
        stats = module.statistics(params, x, backend.to_device(labels_host, device))
        solved, error = module.solve(params, stats)
        out["statistics"] = stats
        out["solve error"] = np.float64(error)
        for name, v in solved.items():
            out[f"solved {name}"] = v
    return out


def check_module(case: Case, device: str = "gpu", seed: int = 0) -> ModuleCheck:
    """``case`` on the CPU against ``case`` on ``device``."""
    cpu, dev = _run(case, "cpu", seed), _run(case, device, seed)
    if cpu.keys() != dev.keys():
        raise AssertionError(f"{case.name}: the device run produced {sorted(dev)} instead of {sorted(cpu)}")
    check = ModuleCheck(case.name)
    for key, value in cpu.items():
        if backend.to_host(dev[key]).dtype != np.asarray(value).dtype:
            raise AssertionError(f"{case.name}: {key} is {backend.to_host(dev[key]).dtype} on the device, {np.asarray(value).dtype} on the CPU")
        check.differences[key] = relative_difference(value, dev[key])
    return check


def check_modules(device: str = "gpu", cases: list[Case] = CASES) -> list[ModuleCheck]:
    return [check_module(case, device) for case in cases]
