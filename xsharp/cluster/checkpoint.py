"""Checkpoints: one file per step boundary, written atomically (temp file, fsync, rename), with a
SHA-256 over its contents inside. Loading takes the newest file that verifies, so a corrupted
or truncated latest checkpoint falls back to the one before. The newest ``keep`` are kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np

from xsharp.algos.training import History, TrainState

log = logging.getLogger(__name__)
PATTERN = "ckpt-*.npz"


def _digest(flat: np.ndarray, velocity: np.ndarray, meta: str) -> str:
    h = hashlib.sha256()
    for part in (np.ascontiguousarray(flat).tobytes(), np.ascontiguousarray(velocity).tobytes(), meta.encode()):
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
    flat, velocity = np.asarray(state.flat), np.asarray(state.velocity)
    buf = io.BytesIO()
    np.savez(buf, flat=flat, velocity=velocity, meta=np.array(meta), sha256=np.array(_digest(flat, velocity, meta)))
    path = directory / f"ckpt-{seq:08d}.npz"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in existing[: max(0, len(existing) + 1 - keep)]:
        old.unlink(missing_ok=True)
    return path


def load(path: str | Path) -> TrainState:
    """One checkpoint file; ValueError if it does not verify."""
    try:
        with np.load(path, allow_pickle=False) as f:
            flat, velocity, meta, digest = f["flat"], f["velocity"], str(f["meta"]), str(f["sha256"])
    except Exception as e:
        raise ValueError(f"{path}: unreadable checkpoint ({e})") from None
    if _digest(flat, velocity, meta) != digest:
        raise ValueError(f"{path}: checksum mismatch")
    m = json.loads(meta)
    return TrainState(m["phase"], m["epoch"], m["step"], flat, velocity, m["epoch_loss"], m["epoch_rows"], History(**m["history"]))


def load_latest(directory: str | Path) -> tuple[TrainState, Path] | None:
    """The newest checkpoint that verifies, or None if there is none."""
    for path in sorted(Path(directory).glob(PATTERN), reverse=True):
        try:
            return load(path), path
        except ValueError as e:
            log.warning("skipping checkpoint: %s", e)
    return None
