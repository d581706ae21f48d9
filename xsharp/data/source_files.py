"""A user's data file opened for a reader: through a :class:`~xsharp.fileguard.FileGuard`,
``.gz`` / ``.bz2`` decompressed on the fly within the guard's cap, text read a bounded line at a
time. Errors name the file and the problem, never what the file holds: a job's errors are shown
to its user, and the file may be one they could not read themselves.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from xsharp.fileguard import DataError, FileGuard

# Bytes of one line (and of one CSV record, however many lines it spans) of a text file. A row is
# one sample for tfidf / bow / word2vec: 1 MiB is some 150,000 words, far past any document a
# classifier reads, and small enough that a lying line (300 MiB of one line in a 300 KB .gz)
# is refused after reading 1 MiB of it, not held whole.
MAX_TEXT_BYTES = 1 << 20


def why(e: BaseException) -> str:
    """Why a read failed, without the file's bytes (a decoder's message may quote them)."""
    return getattr(e, "strerror", None) or type(e).__name__


class CappedStream(io.RawIOBase):
    """A decompressing stream that refuses to yield more than ``cap`` bytes: a few KB of .gz
    or .bz2 may decompress to GBs, and the guard's cap a file saw only the compressed size."""

    def __init__(self, inner: IO[bytes], cap: int, path: Path) -> None:
        self.inner, self.cap, self.path, self.count = inner, cap, path, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.inner.readinto(b)
        self.count += n or 0
        if self.count > self.cap:
            raise DataError(f"{self.path}: over {self.cap} bytes once decompressed (this server's cap a file)")
        return n


@contextlib.contextmanager
def open_source(path: Path, guard: FileGuard, field: str = "data.path", text: bool = False) -> Iterator[IO]:
    """A file opened through ``guard``, ``.gz`` / ``.bz2`` decompressed on the fly (at most
    ``guard.max_file_bytes`` decompressed bytes, when the guard has a cap); ``text``: UTF-8 text
    with newlines left to the csv module."""
    with guard.open(path, field) as raw:
        suffix = path.suffix.lower()
        f: IO = gzip.GzipFile(fileobj=raw, mode="rb") if suffix == ".gz" else bz2.BZ2File(raw, "rb") if suffix == ".bz2" else raw
        if f is not raw and guard.max_file_bytes is not None:
            f = io.BufferedReader(CappedStream(f, guard.max_file_bytes, path), 1 << 16)
        with io.TextIOWrapper(f, encoding="utf-8", newline="") if text else f as opened:
            yield opened


class TextLines:
    """The lines of a binary file as text, each read with a bound (``limit`` bytes, newline not
    counted), so one unbounded line is refused after ``limit`` bytes rather than held whole.
    ``record``: the bytes read since the reader last set it to 0 (a CSV record may span lines);
    over ``limit`` is refused too. Errors name the file and the line."""

    def __init__(self, f: IO[bytes], path: Path, limit: int = MAX_TEXT_BYTES) -> None:
        self.f, self.path, self.limit = f, path, limit
        self.number = 0  # the line last read, 1-based
        self.record = 0

    def __iter__(self) -> Iterator[str]:
        while True:
            raw = self.f.readline(self.limit + 1)
            if not raw:
                return
            self.number += 1
            self.record += len(raw)
            if len(raw) > self.limit and not raw.endswith(b"\n"):
                raise DataError(f"{self.path}: line {self.number} is longer than {self.limit} bytes (the cap a line of text)")
            if self.record > self.limit + 2:
                raise DataError(f"{self.path}: the row ending at line {self.number} is longer than {self.limit} bytes (the cap a row of text)")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{self.path}: not UTF-8 text (line {self.number})") from None
            yield line.removeprefix("\ufeff") if self.number == 1 else line
