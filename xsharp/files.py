"""Files a reader never sees half-written: one file replaced whole, or a folder of files replaced whole.

A crash leaves the old content or the new, never a mix: the new bytes go to a temporary name in
the same folder, reach the disk (``fsync``), and are renamed over the old (``os.replace`` is atomic
within a filesystem); the folder is synced too, so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path


def sync_folder(folder: Path) -> None:
    """Make the renames and creations inside ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some filesystems (and platforms) refuse fsync on a directory; the data itself is synced
            os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path | str, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (str: UTF-8): readers see the old file or the new one, whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")  # a name of its own: two writers never share one
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # as open() would: the umask decides
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def save_table(path: Path, data: dict) -> None:
    """Write a JSON table (a search's search.json) atomically: a reader (the API, a resumed search) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=1))


def save_files(folder: Path, files: dict[str, bytes]) -> None:
    """Replace ``folder`` with ``files`` as a whole (written aside, then renamed in): after a
    crash it holds the old set or the new one, never half of each."""
    new, old = folder.with_name(folder.name + ".new"), folder.with_name(folder.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    for name, content in files.items():
        write_atomic(new / Path(name).name, content)
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    new.rename(folder)
    sync_folder(folder.parent)
    shutil.rmtree(old, ignore_errors=True)


def load_files(folder: Path) -> dict[str, bytes] | None:
    """What :func:`save_files` last finished writing (the old set if a crash came between its renames)."""
    for d in (folder, folder.with_name(folder.name + ".old")):
        if d.is_dir():
            return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    return None
