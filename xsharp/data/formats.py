"""The formats a path may be read in (``data.format``), each a reader returning
:class:`~xsharp.data.arrays.Arrays`, and the format a path's name or contents say. Add a
format to ``FORMATS``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from xsharp.fileguard import ANYWHERE, DataError, FileGuard

from .arrays import Arrays
from .audio_folder import AUDIO_SUFFIXES, read_audio_folder
from .csv_text import read_csv_text
from .idx import read_idx_arrays
from .images import IMAGE_SUFFIXES, read_image_folder
from .npz import read_npz_arrays
from .tables import read_table
from .text import read_text
from .wav import read_wav_folder

# images, audio, table, text: users' own data, read by xsharp.data's readers
FORMATS: dict[str, Callable[..., Arrays]] = {
    "npz": read_npz_arrays,
    "idx": read_idx_arrays,
    "wav": read_wav_folder,
    "csv": read_csv_text,
    "images": read_image_folder,
    "audio": read_audio_folder,
    "table": read_table,
    "text": read_text,
}
_SUFFIX_FORMATS = {"npz": "npz", "idx": "idx", "wav": "wav", "csv": "csv", "parquet": "table", "pq": "table", "jsonl": "text", "ndjson": "text"}


def _class_folders_hold(folder: Path, guard: FileGuard) -> str | None:
    """``images`` or ``audio`` when the class folders under ``folder`` (or under its ``train/``)
    hold image or audio files: the first file of a known suffix decides. Only folders the guard
    lets a job read are looked into: what lies behind a symlink out of the data roots must not
    show in the answer."""

    def readable_folders(parent: Path) -> list[Path]:
        out = []
        for p in sorted(parent.iterdir()):
            if p.name.startswith("."):
                continue
            try:
                if guard.resolve(p).is_dir():
                    out.append(p)
            except DataError:
                continue
        return out

    subfolders = readable_folders(folder)
    train = folder / "train"
    if train in subfolders:
        subfolders = [train, *readable_folders(train), *subfolders]
    for sub in subfolders:
        try:
            with os.scandir(sub) as entries:  # stops at the first file of a known suffix
                for entry in entries:
                    suffix = Path(entry.name).suffix.lower()
                    if suffix in IMAGE_SUFFIXES:
                        return "images"
                    if suffix in AUDIO_SUFFIXES:
                        return "audio"
        except OSError:  # unreadable: the reader will say so
            continue
    return None


def format_of(path: str | Path, guard: FileGuard = ANYWHERE) -> str | None:
    """The format a path's name (or, for a folder, its files) says: ``x.npz``, ``t.csv.bz2``,
    ``train-images-idx3-ubyte.gz``, ``t.parquet`` (a table), ``t.jsonl.gz`` (text), a folder of
    ``.wav`` files or of IDX files, a folder of class folders of images or of audio."""
    p = Path(path)
    if p.is_dir():
        names = [f.name for f in p.iterdir()]
        if any(n.lower().endswith(".wav") for n in names):
            return "wav"
        if any("-idx" in n for n in names):
            return "idx"
        return _class_folders_hold(p, guard)
    name = p.name.lower()
    for compressed in (".gz", ".bz2"):
        name = name.removesuffix(compressed)
    if "-idx" in name or name.endswith(".idx"):
        return "idx"
    return _SUFFIX_FORMATS.get(Path(name).suffix.lstrip("."))
