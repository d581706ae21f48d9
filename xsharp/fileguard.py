"""Opening the files a job's data names, under a guard.

`xsharp run` on one's own machine reads any path: it runs as the user, with the user's rights.
A job that came through the job service runs as the server's OS user, which can read the job
store, the server's config and every other user's jobs; its guard confines it to the data roots
an admin configured. Either way only regular files and folders are read: a device, a FIFO or a
socket would hang a runner or feed it without end.

A path is resolved (symlinks included) before any rule is checked, and a file is opened
without following a final symlink and without blocking, then checked again on the open
descriptor, so a file swapped between the check and the open is still caught.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

# Never data, wherever a data root points: the kernel's views and device nodes.
SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))


class DataError(ValueError):
    """The data a spec points at is missing or malformed (a user error, not a crash)."""


class Forbidden(DataError):
    """A path a job may not read. The message names the field and the rule, never the file's content."""

    def __init__(self, field_path: str, rule: str):
        self.field, self.rule = field_path, rule
        super().__init__(f"{field_path}: {rule}")

    def __reduce__(self):  # crosses process boundaries (a runner's error reaches the scheduler)
        return (Forbidden, (self.field, self.rule))


def _opened_path(fd: int) -> Path | None:
    """The path the kernel opened ``fd`` at (Linux's /proc/self/fd); None where that is not known."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


def _cannot_read(e: OSError, path, field_path: str) -> DataError:
    why = "no such file or directory" if isinstance(e, FileNotFoundError) else f"cannot be read ({e.strerror})"
    return DataError(f"{field_path}: {path}: {why}")


def _within(path: Path, tree: Path) -> bool:
    return path == tree or path.is_relative_to(tree)


@dataclass(frozen=True)
class FileGuard:
    """Where a job's data may come from.

    ``roots``: the folders a job may read under (resolved); None reads anywhere (a user's own
    run). ``denied``: trees never read, even under a root (the job store, the client config,
    Ray's session and token). ``max_file_bytes``: the largest file a job may open.
    """

    roots: tuple[Path, ...] | None = None
    denied: tuple[Path, ...] = ()
    max_file_bytes: int | None = None
    _resolved_denied: tuple[Path, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        system = SYSTEM_TREES if self.roots is not None else ()  # a user's own run reads what they can
        denied = tuple(Path(os.path.realpath(p)) for p in (*system, *self.denied))
        object.__setattr__(self, "_resolved_denied", denied)
        if self.roots is not None:
            object.__setattr__(self, "roots", tuple(Path(os.path.realpath(r)) for r in self.roots))

    @property
    def confined(self) -> bool:
        return self.roots is not None

    def resolve(self, path: str | Path, field_path: str = "data.path") -> Path:
        """The real path of ``path`` if the rules allow reading there, else :class:`Forbidden`.

        Says nothing of whether the path exists: a path outside the roots gets the same answer
        either way. A relative path of a confined job is taken under the first data root."""
        p = Path(path)
        if "\x00" in str(p):
            raise Forbidden(field_path, "a path cannot hold a NUL character")
        try:
            os.fsencode(p)
        except UnicodeEncodeError:  # a lone surrogate from JSON's \ud800: no file has that name
            raise Forbidden(field_path, "a path must be valid text") from None
        if self.roots is None:
            p = p.expanduser()
        else:
            if ".." in p.parts:  # a symlink met before a '..' would tell what lies outside
                raise Forbidden(field_path, "a path of a service job cannot hold '..'; name the file under a data root")
            if not self.roots:
                raise Forbidden(
                    field_path, "this server has no data roots: jobs read named datasets only (an admin adds roots with `xsharp server --data-root DIR`)"
                )
            if not p.is_absolute():
                p = self.roots[0] / p
        real = Path(os.path.realpath(p))
        self._check_place(real, field_path)
        return real

    def _check_place(self, real: Path, field_path: str) -> None:
        if self.roots is not None and not any(_within(real, r) for r in self.roots):
            raise Forbidden(field_path, "not under a data root of this server (named datasets and `xsharp server --data-root` folders only)")
        if any(_within(real, d) for d in self._resolved_denied):
            raise Forbidden(field_path, "the server's own files (job store, config, job folders, Ray's session) and /proc, /sys, /dev are never data")

    def check(self, path: str | Path, field_path: str = "data.path") -> Path:
        """``resolve``, then: it exists and is a regular file within the size cap, or a folder."""
        real = self.resolve(path, field_path)
        try:
            st = os.stat(real)
        except OSError as e:
            raise _cannot_read(e, path, field_path) from None
        self._check_stat(st, path, field_path, folder_ok=True)
        return real

    def as_given(self, path: str | Path, field_path: str = "data.path") -> Path:
        """``check``, then the path readers should use: as the user gave it (its suffixes,
        ``.csv.gz``, and its neighbours, MNIST's labels file, are the user's, whatever a symlink
        points at; the guard resolves it again at each open), or, for a relative path of a
        confined job, the resolved one under the first data root."""
        real = self.check(path, field_path)
        return Path(path).expanduser() if not self.confined or Path(path).is_absolute() else real

    def _check_stat(self, st: os.stat_result, path, field_path: str, folder_ok: bool) -> None:
        if stat.S_ISDIR(st.st_mode) and folder_ok:
            return
        if not stat.S_ISREG(st.st_mode):
            raise Forbidden(field_path, f"{path}: not a regular file or folder (devices, FIFOs and sockets are never data)")
        if self.max_file_bytes is not None and st.st_size > self.max_file_bytes:
            raise Forbidden(field_path, f"{path}: {st.st_size} bytes, over this server's cap of {self.max_file_bytes} bytes a file")

    def open(self, path: str | Path, field_path: str = "data.path") -> BinaryIO:
        """The file, open for binary reading, once every rule holds on the open descriptor."""
        if self.roots is None and not self._resolved_denied:  # nowhere to keep out of: no path to resolve (an import opens thousands of files)
            real, nofollow = Path(path).expanduser(), 0
        else:
            real, nofollow = self.resolve(path, field_path), getattr(os, "O_NOFOLLOW", 0)
        flags = os.O_RDONLY | os.O_NONBLOCK | nofollow | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(real, flags)
        except OSError as e:
            raise _cannot_read(e, path, field_path) from None
        try:
            self._check_stat(os.fstat(fd), path, field_path, folder_ok=False)
            if self.roots is not None:  # a folder on the way swapped for a symlink since resolve: where did we land?
                opened = _opened_path(fd)
                if opened is not None:
                    self._check_place(opened, field_path)
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def files(self, folder: str | Path, field_path: str = "data.path") -> list[Path]:
        """The entries of a folder, sorted; each is checked again when it is opened."""
        real = self.resolve(folder, field_path)
        if not real.is_dir():
            raise DataError(f"{field_path}: {folder}: not a folder")
        return sorted(real.iterdir())


ANYWHERE = FileGuard()  # `xsharp run`: the user's own rights
