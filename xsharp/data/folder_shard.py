"""One shard of a folder import, as a Ray task runs it: its files decoded (each read once, hashed
from the same bytes), the rows written as a shard, and a report of counts, skipped files and
hashes. A failure comes back in the result, in words safe to show."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xsharp.fileguard import DataError, FileGuard

from .audio_folder import DEFAULT_DURATION, DEFAULT_RATE, decode_audio
from .images import ImageOptions, decode_image_bytes
from .import_plan import ImportOptions, file_hash
from .shards import write_shard
from .source_files import why


@dataclass
class DecodedFile:
    x: np.ndarray
    sha256: str  # of the file's bytes


def decoder(kind: str, options: ImportOptions) -> Callable[[Path, FileGuard], DecodedFile]:
    """One file of a folder decoded, with its content hash. An image is read once: its hash and
    its pixels come from the same bytes."""
    if kind == "images":
        o = ImageOptions(tuple(options.size) if options.size else None, options.resize, options.channels)

        def image(path: Path, guard: FileGuard) -> DecodedFile:
            try:
                with guard.open(path) as f:
                    data = f.read()
            except OSError as e:
                raise DataError(f"{path}: not a readable image ({why(e)})") from None
            return DecodedFile(decode_image_bytes(data, o, path), hashlib.sha256(data).hexdigest())

        return image
    rate, duration = options.sample_rate or DEFAULT_RATE, options.duration or DEFAULT_DURATION
    return lambda path, guard: DecodedFile(decode_audio(path, rate, duration, guard), file_hash(path, guard))


def write_folder_shard(job: dict, kind: str, options: ImportOptions, staging: str, guard: FileGuard, root: str, shape: list[int], n_classes: int) -> dict:
    """One shard of a folder import (runs in a Ray task): decode, write, report. A failure
    comes back as the result's ``error`` (words safe to show), never as a task's traceback."""
    try:
        return _folder_shard(job, kind, options, staging, guard, root, shape, n_classes)
    except DataError as e:
        return {"error": str(e)}
    except Exception as e:  # a full disk, a decoder's own bug: its words may quote the file
        where = f"shard {job['split']}-{job['index']:05d} of the import"
        return {"error": f"{where}: {type(e).__name__}" + (f" ({e.strerror})" if isinstance(e, OSError) and e.strerror else "")}


def _relative(path: str, root: str) -> str:
    return os.path.relpath(os.path.abspath(path), os.path.abspath(root))


def _folder_shard(job: dict, kind: str, options: ImportOptions, staging: str, guard: FileGuard, root: str, shape: list[int], n_classes: int) -> dict:
    decode = decoder(kind, options)
    rows, labels, skipped, hashes = [], [], [], []
    for path, label in zip(job["files"], job["labels"]):
        try:
            decoded = decode(Path(path), guard)
            a = decoded.x
            if list(a.shape) != shape:
                raise DataError(f"{path}: decodes to shape {list(a.shape)}, the other files to {shape}; set size to resize every image")
            hashes.append([_relative(path, root), decoded.sha256])
        except DataError as e:
            if not options.skip_bad:
                return {"error": str(e)}
            skipped.append(_relative(path, root))
            continue
        rows.append(a)
        labels.append(label)
    dtype = np.uint8 if kind == "images" else np.float32
    x = np.stack(rows).astype(dtype, copy=False) if rows else np.zeros((0, *shape), dtype)
    y = np.asarray(labels, np.int64)
    info = write_shard(Path(staging), job["split"], job["index"], x, y) if len(y) else None
    return {
        "split": job["split"],
        "index": job["index"],
        "info": info,
        "counts": np.bincount(y, minlength=n_classes).tolist(),
        "skipped": skipped,
        "hashes": hashes,
        "files": len(job["files"]),
    }
