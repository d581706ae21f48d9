"""`xsharp run`'s path (run_job): a worker actor killed mid-training restarts the worker group
from the last checkpoint, and the run ends where an uninterrupted run ends."""

import numpy as np
import pytest
import ray

from tests.helpers import TINY
from xsharp.cluster import checkpoint
from xsharp.cluster.runner import run_job
from xsharp.parallel.group import WorkerFailed
from xsharp.spec import parse_spec

SPEC = TINY | {"pretrain": {"epochs": 1, "batch_size": 20}, "train": {"epochs": 4, "batch_size": 20, "learning_rate": 0.3}}
LAYOUTS = {  # every Ray mode, deterministic settings, so the result can be compared with local training
    # data parallel reports through rank 0's event queue, a poll behind, and its shared-memory
    # allreduce runs an epoch of this spec in ~1.5 ms: 1,500 epochs keep it running past the
    # first checkpoints. Compared with data parallel uninterrupted (local mode drifts further).
    "data_parallel": {"resources": {"workers": 2, "cpus_per_worker": 0.5}, "train": SPEC["train"] | {"epochs": 1500}},
    "param_server": {"resources": {"workers": 2, "cpus_per_worker": 0.5}, "parallel": {"servers": 2, "staleness": 0}},
    "pipeline": {"resources": {"workers": 2, "cpus_per_worker": 0.5}, "parallel": {"micro_batches": 2}},
    "hybrid": {"resources": {"workers": 4, "cpus_per_worker": 0.5}, "parallel": {"groups": 2, "micro_batches": 1}},
}


class Killer:
    """Kills worker ``victim`` of the first group once fine-tuning reaches ``epoch``."""

    def __init__(self, directory, victim: int = 1, epoch: int = 2, after_checkpoint: bool = False):
        self.directory, self.victim, self.epoch, self.after_checkpoint = directory, victim, epoch, after_checkpoint
        self.groups: list[list] = []
        self.at_kill = None  # the newest checkpoint when the worker died

    def placed(self, actors: list) -> None:
        self.groups.append(actors)

    def report(self, event) -> None:
        if len(self.groups) == 1 and self.at_kill is None and event.phase == "finetune" and event.epoch >= self.epoch:
            found = checkpoint.load_latest(self.directory)
            if found is None and self.after_checkpoint:
                return  # not yet: a later event will find one
            self.at_kill = found[0].position if found else {"samples": 0}
            ray.kill(self.groups[0][self.victim], no_restart=True)


@pytest.mark.parametrize("mode", list(LAYOUTS))
def test_a_killed_worker_restarts_the_group_from_the_last_checkpoint(ray_address, tmp_path, mode):
    layout = LAYOUTS[mode]
    peer = SPEC | layout | {"mode": mode} if mode == "data_parallel" else SPEC | {"train": layout.get("train", SPEC["train"])}
    uninterrupted = run_job(parse_spec(peer)).model.get_flat()
    spec = parse_spec(SPEC | layout | {"mode": mode, "parallel": {"checkpoint_every": 0.2} | layout.get("parallel", {})})
    killer = Killer(tmp_path / "checkpoints", epoch=2, after_checkpoint=mode == "data_parallel")  # (others: epoch 2 is late enough on a busy machine)
    messages = []
    result = run_job(spec, out_dir=tmp_path, report=killer.report, status=messages.append, max_restarts=2, on_workers=killer.placed)
    assert len(killer.groups) == 2 and killer.at_kill["samples"] > 0  # killed once, after a checkpoint
    assert result.metrics["restarts"] == 1
    assert any("restarting the worker group (1/2) from checkpoint" in m for m in messages)
    (resumed,) = result.metrics["resumed_from"]
    assert resumed["samples"] >= killer.at_kill["samples"]  # lost at most what came after the newest checkpoint
    np.testing.assert_allclose(result.model.get_flat(), uninterrupted, rtol=1e-4, atol=1e-4)
    assert (tmp_path / "model.npz").exists()


def test_restarts_are_bounded(ray_address, tmp_path):
    spec = parse_spec(SPEC | {"mode": "pipeline", "resources": {"workers": 2, "cpus_per_worker": 0.5}, "parallel": {"checkpoint_every": 0.1}})
    killer = Killer(tmp_path / "checkpoints", victim=0)
    with pytest.raises(WorkerFailed, match="pipeline stage"):
        run_job(spec, out_dir=tmp_path, report=killer.report, max_restarts=0, on_workers=killer.placed)
