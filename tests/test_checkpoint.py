import hashlib
import json

import numpy as np

from xsharp.algos.training import History, TrainState
from xsharp.cluster import checkpoint


def state(step: int) -> TrainState:
    h = History(finetune=[{"epoch": 1, "loss": 0.5, "val_accuracy": 0.9}], samples=step * 10, seconds=1.5)
    return TrainState(1, 0, step, np.full(5, step, np.float32), np.zeros(5, np.float32), 2.0, 20, h)


def test_round_trip_and_only_the_newest_are_kept(tmp_path):
    for step in range(1, 6):
        checkpoint.save(tmp_path, state(step), keep=3)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["ckpt-00000003.npz", "ckpt-00000004.npz", "ckpt-00000005.npz"]
    loaded, path = checkpoint.load_latest(tmp_path)
    assert path.name == "ckpt-00000005.npz" and loaded.step == 5
    np.testing.assert_array_equal(loaded.flat, np.full(5, 5, np.float32))
    assert loaded.history.finetune == state(5).history.finetune and loaded.history.samples == 50
    np.testing.assert_array_equal(loaded.optimizer_state, state(5).optimizer_state)


def test_a_corrupted_or_truncated_latest_falls_back_to_the_previous(tmp_path):
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, state(step))
    latest = tmp_path / "ckpt-00000003.npz"
    data = bytearray(latest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    latest.write_bytes(bytes(data))
    loaded, path = checkpoint.load_latest(tmp_path)
    assert loaded.step == 2 and path.name == "ckpt-00000002.npz"
    (tmp_path / "ckpt-00000002.npz").write_bytes(b"PK\x03\x04 truncated")
    assert checkpoint.load_latest(tmp_path)[0].step == 1


def test_no_checkpoint_and_no_leftover_temp_files(tmp_path):
    assert checkpoint.load_latest(tmp_path) is None
    checkpoint.save(tmp_path, state(1))
    assert not list(tmp_path.glob("*.tmp"))


def test_a_file_in_the_first_format_still_loads(tmp_path):
    # Written by hand as checkpoints were before TrainState.velocity became optimizer_state:
    # the optimiser state under the npz key "velocity", inside the checksum.
    flat, velocity = np.arange(4, dtype=np.float32), np.full(9, 0.5, np.float32)
    history = {
        "pretrain": [],
        "finetune": [{"epoch": 1, "loss": 0.7, "val_accuracy": 0.8}],
        "samples": 40,
        "seconds": 2.0,
        "first_step_at": None,
        "prefetched": 0,
        "resumed_from": [],
    }
    meta = json.dumps({"phase": 1, "epoch": 2, "step": 3, "epoch_loss": 1.5, "epoch_rows": 12, "history": history})
    digest = hashlib.sha256(flat.tobytes() + velocity.tobytes() + meta.encode()).hexdigest()
    np.savez(tmp_path / "ckpt-00000001.npz", flat=flat, velocity=velocity, meta=np.array(meta), sha256=np.array(digest))
    loaded, _ = checkpoint.load_latest(tmp_path)
    assert (loaded.phase, loaded.epoch, loaded.step, loaded.epoch_loss, loaded.epoch_rows) == (1, 2, 3, 1.5, 12)
    np.testing.assert_array_equal(loaded.flat, flat)
    np.testing.assert_array_equal(loaded.optimizer_state, velocity)
    assert loaded.history.finetune == history["finetune"] and loaded.history.samples == 40
