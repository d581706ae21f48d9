"""Checkpoints: one file per step boundary, written atomically (temp file, fsync, rename), with a
SHA-256 over its contents inside. Loading takes the newest file that verifies, so a corrupted
or truncated latest checkpoint falls back to the one before. The newest ``keep`` are kept.
The optimiser state is stored under the key ``velocity``, its name when the format was made, so
files written before and after read alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from xsharp.algos.training import History, TrainState
from xsharp.files import write_atomic

log = logging.getLogger(__name__)
PATTERN = "ckpt-*.npz"
STATE_KEY = "velocity"  # the npz key of TrainState.optimizer_state (its first name: old files keep loading)


def _digest(flat: np.ndarray, optimizer_state: np.ndarray, meta: str) -> str:
    h = hashlib.sha256()
    for part in (np.ascontiguousarray(flat).tobytes(), np.ascontiguousarray(optimizer_state).tobytes(), meta.encode()):
        h.update(part)
    return h.hexdigest()


def save(directory: str | Path, state: TrainState, keep: int = 3) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    existing = sorted(directory.glob(PATTERN))
    seq = int(existing[-1].stem.split("-")[1]) + 1 if existing else 1
    meta = json.dumps(
        {
            "phase": state.phase,
            "epoch": state.epoch,
            "step": state.step,
            "epoch_loss": state.epoch_loss,
            "epoch_rows": state.epoch_rows,
            "history": dataclasses.asdict(state.history),
        }
    )
    flat, optimizer_state = np.asarray(state.flat), np.asarray(state.optimizer_state)
    buf = io.BytesIO()
    np.savez(buf, flat=flat, **{STATE_KEY: optimizer_state}, meta=np.array(meta), sha256=np.array(_digest(flat, optimizer_state, meta)))
    path = directory / f"ckpt-{seq:08d}.npz"
    write_atomic(path, buf.getvalue())
    for old in existing[: max(0, len(existing) + 1 - keep)]:
        old.unlink(missing_ok=True)
    return path


def load(path: str | Path) -> TrainState:
    """One checkpoint file; ValueError if it does not verify."""
    try:
        with np.load(path, allow_pickle=False) as f:
            flat, optimizer_state, meta, digest = f["flat"], f[STATE_KEY], str(f["meta"]), str(f["sha256"])
    except Exception as e:
        raise ValueError(f"{path}: unreadable checkpoint ({e})") from None
    if _digest(flat, optimizer_state, meta) != digest:
        raise ValueError(f"{path}: checksum mismatch")
    m = json.loads(meta)
    return TrainState(m["phase"], m["epoch"], m["step"], flat, optimizer_state, m["epoch_loss"], m["epoch_rows"], History(**m["history"]))


def load_latest(directory: str | Path) -> tuple[TrainState, Path] | None:
    """The newest checkpoint that verifies, or None if there is none."""
    for path in sorted(Path(directory).glob(PATTERN), reverse=True):
        try:
            return load(path), path
        except ValueError as e:
            log.warning("skipping checkpoint: %s", e)
    return None
