import numpy as np
import pytest

from xsharp.cluster.runner import load_data, run_job
from xsharp.parallel.execution import build_model
from xsharp.parallel.group import PlacementError
from xsharp.spec import parse_spec


@pytest.fixture(scope="module")
def local_result():
    from tests.helpers import TINY

    return run_job(parse_spec(TINY))


def dp(spec: dict, workers: int) -> dict:
    return spec | {"mode": "data_parallel", "resources": {"workers": workers, "cpus_per_worker": 1}}


def test_two_workers_match_local_training(ray_address, tiny, local_result):
    events = []
    result = run_job(parse_spec(dp(tiny, 2)), report=events.append)
    a, b = local_result.model.get_flat(), result.model.get_flat()
    untrained = build_model(parse_spec(tiny), load_data(parse_spec(tiny))).get_flat()
    assert np.abs(b - untrained).max() > 0.05  # it trained
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)  # float32 reassociation drift only
    assert result.metrics["workers"] == 2
    assert result.metrics["samples"] == local_result.metrics["samples"]
    assert abs(result.metrics["test_accuracy"] - local_result.metrics["test_accuracy"]) <= 1 / 120
    assert local_result.metrics["test_accuracy"] > 0.85
    # rank 0's progress reaches the driver: one epoch-end event per pretrained layer-epoch and per fine-tuning epoch
    ends = [(e.phase, e.layer, e.epoch) for e in events if e.epoch_end]
    pretrain_ends = [("pretrain", layer, e) for layer in (0, 1) for e in (1, 2, 3)]
    assert ends == pretrain_ends + [("finetune", None, e) for e in range(1, 21)]
    assert all(e.val_accuracy is not None for e in events if e.phase == "finetune" and e.epoch_end)


def test_one_worker_is_bitwise_local(ray_address, tiny, local_result):
    result = run_job(parse_spec(dp(tiny, 1)))
    np.testing.assert_array_equal(result.model.get_flat(), local_result.model.get_flat())


def test_uneven_batches_and_three_workers_still_match(ray_address, tiny, local_result):
    spec = dp(tiny, 3)
    spec["resources"]["cpus_per_worker"] = 0.5  # batch 20 over 3 workers: shares 7, 7, 6
    result = run_job(parse_spec(spec))
    np.testing.assert_allclose(result.model.get_flat(), local_result.model.get_flat(), rtol=1e-4, atol=1e-4)  # float32 reassociation drift only


def test_a_group_that_can_never_fit_is_refused_at_once(ray_address, tiny):
    with pytest.raises(PlacementError, match="3 workers x 1 CPU can never fit: the cluster has 2 CPU in all"):
        run_job(parse_spec(dp(tiny, 3)))


def test_a_stopped_group_resumes_where_it_stopped(ray_address, tiny):
    from xsharp.algos.training import Stopped
    from xsharp.parallel import RunContext
    from xsharp.parallel.data_parallel import DataParallelMode

    # Long enough that the stop, sent when the driver sees epoch 3, lands before the end: the
    # shared-memory allreduce runs the 20 epochs of `tiny` inside one 0.2 s driver poll.
    tiny["train"]["epochs"] = 150
    spec = parse_spec(dp(tiny, 2))
    data = load_data(spec)
    seen = []
    ctx = RunContext(data=data, report=seen.append, should_stop=lambda: any(e.phase == "finetune" and e.epoch >= 3 for e in seen))
    with pytest.raises(Stopped) as e:
        DataParallelMode().run(spec, ctx)
    state = e.value.state
    assert state.phase == 2 and 2 <= state.epoch < 150  # phases: pretrain rbm, pretrain autoencoder, fine-tune
    checkpoints = []
    resumed = DataParallelMode().run(spec, RunContext(data=data, resume=state, on_checkpoint=checkpoints.append, checkpoint_every=0))
    whole = DataParallelMode().run(spec, RunContext(data=data))
    np.testing.assert_array_equal(resumed.flat, whole.flat)  # the same group, the same sums: bitwise
    assert resumed.history.resumed_from[0]["epoch"] == state.epoch and checkpoints


def test_overlapped_ring_allreduces_give_the_same_model(ray_address, tiny):
    # On the ring, fine-tuning sends each finished bucket of gradients while earlier layers
    # compute. 1 KiB buckets split this model's three modules into several messages.
    tiny["train"]["epochs"] = 3
    ring = dp(tiny, 2) | {"parallel": {"collective": "ring", "bucket_kb": 1, "overlap": True}}
    plain = run_job(parse_spec(ring | {"parallel": ring["parallel"] | {"overlap": False}})).model.get_flat()
    overlapped = run_job(parse_spec(ring)).model.get_flat()
    np.testing.assert_array_equal(overlapped, plain)  # the same sums, so bitwise the same
    shm = run_job(parse_spec(dp(tiny, 2) | {"parallel": {"collective": "shm"}})).model.get_flat()
    np.testing.assert_allclose(shm, plain, rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match="nccl needs every worker's buffer on a GPU"):
        run_job(parse_spec(dp(tiny, 2) | {"parallel": {"collective": "nccl"}}))
