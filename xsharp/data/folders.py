"""Class folders: ``ROOT/CLASS/file`` (the class is the folder's name), optionally split by the
folder itself as ``ROOT/train/CLASS/file`` beside ``ROOT/test/...`` and/or ``ROOT/val/...``.

Listing is sorted and so deterministic: classes by name, files by path. Hidden entries (a
leading ``.``) and files of other suffixes are ignored, as are folders nested inside a class
folder. Decoding the listed files runs on a thread pool (the decoders release the GIL).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xsharp.fileguard import ANYWHERE, DataError, FileGuard, Forbidden

from .arrays import MAX_CLASSES, Arrays, class_names

SPLITS = ("train", "val", "test")
DECODE_BATCH = 1024  # files decoded per round: bounds the decoded rows waiting to be copied
# Bytes of one decoded row (uint8 pixels, float32 samples), checked from the options before any
# file is decoded: DECODE_BATCH rows wait in memory at once, and the API server may be the reader.
MAX_ROW_BYTES = 64 << 20


@dataclass
class FolderListing:
    """What a class folder holds: each file, its class index, and its split when the folder has
    its own (``train``/``val``/``test`` per file; None when it has none)."""

    root: Path
    files: list[Path]
    labels: np.ndarray  # int64, an index into classes
    classes: list[str]
    splits: np.ndarray | None


def _visible_folders(entries: list[Path]) -> list[Path]:
    return [p for p in entries if not p.name.startswith(".") and p.is_dir()]


def _split_layout(root: Path, entries: list[Path], guard: FileGuard) -> dict[str, Path] | None:
    """``{split: folder}`` when ``root`` holds ``train/`` with class folders in it, else None."""
    folders = {p.name: p for p in _visible_folders(entries)}
    train = folders.get("train")
    if train is None or not _visible_folders(guard.files(train)):
        return None
    others = sorted(set(folders) - set(SPLITS))
    if others:
        raise DataError(f"{root}: holds train/ with class folders, and also {others[0]}/, which is neither val/ nor test/")
    return {s: folders[s] for s in SPLITS if s in folders}


def _class_files(folder: Path, suffixes: Collection[str], kind: str, guard: FileGuard) -> list[Path]:
    files = [f for f in guard.files(folder) if not f.name.startswith(".") and f.suffix.lower() in suffixes and not f.is_dir()]
    if not files:
        raise DataError(f"{folder}: a class folder with no {kind} files ({', '.join(sorted(suffixes))})")
    return files


def row_bytes(kind: str, size: Sequence[int] | None = None, channels: int = 3, sample_rate: float = 0, duration: float = 0) -> int:
    """Bytes of one decoded row of a class folder: ``images`` H x W x channels uint8 pixels
    (0 without a ``size``: each image keeps its own, under images.MAX_PIXELS), ``audio``
    round(sample_rate x duration) float32 samples."""
    if kind == "images":
        return 0 if size is None else math.prod(int(s) for s in size) * int(channels)
    if kind == "audio":
        return max(0, int(round(float(sample_rate) * float(duration)))) * 4
    raise ValueError(f"kind: images or audio, got {kind!r}")


def check_row_bytes(kind: str, size: Sequence[int] | None = None, channels: int = 3, sample_rate: float = 0, duration: float = 0) -> int:
    """``row_bytes``, or a DataError naming the option (``data.size``, ``data.duration``) when one
    row would be over ``MAX_ROW_BYTES``."""
    n = row_bytes(kind, size, channels, sample_rate, duration)
    if n > MAX_ROW_BYTES:
        what = (
            f"data.size {list(size or [])} x {channels} channels"
            if kind == "images"
            else f"data.duration {duration:g} s x data.sample_rate {sample_rate:g} Hz x 4 bytes"
        )
        raise DataError(f"{what}: {n} bytes a row, over the cap of {MAX_ROW_BYTES} bytes one row")
    return n


def list_class_folders(root: str | Path, suffixes: Collection[str], kind: str, guard: FileGuard = ANYWHERE) -> FolderListing:
    """Every ``suffixes`` file of every class folder under ``root`` (see the module's words)."""
    root = Path(root)
    entries = guard.files(root)
    layout = _split_layout(root, entries, guard)
    parts = layout or {"": root}
    class_folders: dict[str, dict[str, Path]] = {}  # split -> class name -> folder
    for split, folder in parts.items():
        found = _visible_folders(entries if folder is root else guard.files(folder))
        if len(found) > MAX_CLASSES:
            raise DataError(f"{folder}: {len(found)} class folders, over the cap of {MAX_CLASSES} classes")
        if not found:
            raise DataError(f"{folder}: no class folders (expected {folder}/CLASS/*{sorted(suffixes)[0]}, one folder per class)")
        class_folders[split] = {p.name: p for p in found}
    names = sorted(set(class_folders.get("train", class_folders.get("", {}))))
    for split in ("val", "test"):
        extra = sorted(set(class_folders.get(split, {})) - set(names))
        if extra:
            raise DataError(f"{root}: {split}/ has a class folder {extra[0]!r} that train/ lacks")
    classes = class_names(names, str(root))
    index = {c: i for i, c in enumerate(classes)}
    files: list[Path] = []
    labels: list[int] = []
    splits: list[str] = []
    for split, by_class in class_folders.items():
        for name in sorted(by_class):
            found = _class_files(by_class[name], suffixes, kind, guard)
            files += found
            labels += [index[name]] * len(found)
            splits += [split] * len(found)
    return FolderListing(root, files, np.array(labels, dtype=np.int64), classes, np.array(splits) if layout else None)


@dataclass
class Decoded:
    """Decoded rows, one per readable file, and the files skipped as unreadable."""

    rows: np.ndarray
    kept: np.ndarray  # bool, one per file given
    skipped: int


def decode_files(
    files: list[Path], decode: Callable[[Path], np.ndarray], where: str, divisor: float = 1.0, skip_bad: bool = False, mismatch: str = ""
) -> Decoded:
    """``decode`` of every file, in parallel threads, as float32 rows divided by ``divisor``, in
    file order.

    Every row must have the first row's shape (``mismatch``: what to add to the error when one
    does not). ``skip_bad``: a file that will not decode is left out and counted, instead of
    stopping the read (a file the guard forbids still stops it). ``where`` names the source."""

    def attempt(path: Path) -> np.ndarray | None:
        try:
            return decode(path)
        except Forbidden:
            raise
        except DataError:
            if not skip_bad:
                raise
            return None

    rows: np.ndarray | None = None
    kept = np.zeros(len(files), dtype=bool)
    count = 0  # rows written: a kept file's row goes to rows[count], so skipped files leave no gap
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for lo in range(0, len(files), DECODE_BATCH):
            for i, a in enumerate(pool.map(attempt, files[lo : lo + DECODE_BATCH]), start=lo):
                if a is None:
                    continue
                if rows is None:
                    rows = np.empty((len(files), *a.shape), dtype=np.float32)
                elif a.shape != rows.shape[1:]:
                    raise DataError(f"{files[i]}: decodes to shape {list(a.shape)}, the files before it to {list(rows.shape[1:])}{mismatch}")
                np.divide(a, np.float32(divisor), out=rows[count], dtype=np.float32)
                kept[i] = True
                count += 1
    if rows is None:
        raise DataError(f"{where}: none of its {len(files)} files could be read")
    return Decoded(rows[:count], kept, len(files) - count)


def split_arrays(decoded: Decoded, listing: FolderListing) -> Arrays:
    """Decoded rows of a class folder as ``Arrays``: the folder's test/ as the test rows, val/
    joined to the training rows (``datasets.load`` takes its validation share from them)."""
    x, y = decoded.rows, listing.labels[decoded.kept]
    classes = list(listing.classes)
    if listing.splits is None or not (listing.splits == "test").any():
        return Arrays(x, y, classes=classes, skipped=decoded.skipped)
    test = listing.splits[decoded.kept] == "test"
    return Arrays(x[~test], y[~test], x[test], y[test], classes=classes, skipped=decoded.skipped)
