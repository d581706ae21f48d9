"""Hybrid: G groups x K stages, model parallel inside a group, data parallel across groups."""

import numpy as np

from tests.helpers import TINY
from xsharp.cluster.runner import run_job
from xsharp.spec import parse_spec

QUICK = TINY | {"pretrain": {"epochs": 1, "batch_size": 20}, "train": {"epochs": 4, "batch_size": 20, "learning_rate": 0.3}}


def test_two_groups_of_two_stages_match_local_training(ray_address):
    local = run_job(parse_spec(QUICK))
    spec = QUICK | {"mode": "hybrid", "resources": {"workers": 4, "cpus_per_worker": 0.5}, "parallel": {"groups": 2, "micro_batches": 2}}
    result = run_job(parse_spec(spec))
    # each group takes 10 rows of every 20-row batch, in micro-batches of 5; each stage's ring
    # allreduce with its peer in the other group sums the halves
    np.testing.assert_allclose(result.model.get_flat(), local.model.get_flat(), rtol=1e-4, atol=1e-4)
    assert result.metrics["groups"] == 2 and result.metrics["stages"] == 2 and result.metrics["workers"] == 4
    assert result.metrics["samples"] == local.metrics["samples"]
    assert [round(h["reconstruction_error"], 3) for h in result.metrics["pretrain"]] == [round(h["reconstruction_error"], 3) for h in local.metrics["pretrain"]]
