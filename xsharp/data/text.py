"""Text with a label per row: CSV (a header line), JSONL (one JSON object per line) or Parquet,
each CSV or JSONL file plain or ``.gz`` / ``.bz2``. One column (or JSON field) holds the text,
one the label (``text_column``, default ``text``; ``label_column``, default ``label``).

Rows are strings, turned into numbers by the spec's ``features`` (tfidf, bow, word2vec). A row
with no label is refused; a missing or null text is the empty text. Labels are text, except
JSON numbers and Parquet integer columns, which are integers (their own class index); a JSONL
file must keep one kind of label throughout. The file must be UTF-8 (a byte order mark is
allowed). Errors name the file and the line (CSV, JSONL) or data row (Parquet), never its content. A line
(and a CSV row, however many lines it spans) holds at most ``MAX_TEXT_BYTES`` (1 MiB), read with
that bound: a longer one is refused, not read whole.

The ``csv`` format (:mod:`xsharp.data.csv_text`) stays as it was; this reader is the ``text``
format.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from xsharp.fileguard import ANYWHERE, DataError, FileGuard

from . import tables
from .arrays import Arrays
from .source_files import MAX_TEXT_BYTES, TextLines, open_source, why  # MAX_TEXT_BYTES: bytes of one line or CSV row
from .tables import TableChunk

TextFormat = Literal["csv", "jsonl", "parquet"]
DEFAULT_TEXT = "text"
READ_CHUNK_ROWS = 65536
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def text_format_of(path: Path) -> TextFormat:
    """``csv``, ``jsonl`` or ``parquet`` by the file's name (``.gz`` / ``.bz2`` looked through)."""
    name = path.name.lower()
    for compressed in (".gz", ".bz2"):
        name = name.removesuffix(compressed)
    kind = _SUFFIXES.get(Path(name).suffix)
    if kind is None:
        raise DataError(f"{path}: cannot tell CSV from JSONL or Parquet: name it .csv, .jsonl or .parquet (optionally .gz or .bz2)")
    return kind  # type: ignore[return-value]


# --------------------------------------------------------------------------- rows of each format
def _csv_rows(path: Path, label_column: str, text_column: str, guard: FileGuard) -> Iterator[tuple[int, str, str]]:
    """(line, label, text) of every row of a CSV file."""
    csv.field_size_limit(MAX_TEXT_BYTES)
    with open_source(path, guard) as f:
        lines = TextLines(f, path, MAX_TEXT_BYTES)
        reader = csv.reader(lines)
        try:
            header = next(reader, None)
            lines.record = 0
            if header is None:
                raise DataError(f"{path}: empty: no header line")
            where = {}
            for name, option in ((label_column, "label_column"), (text_column, "text_column")):
                if name not in header:
                    raise DataError(f"{path}: no column {name!r} ({len(header)} columns in its header line; set data.{option})")
                where[name] = header.index(name)
            li, ti = where[label_column], where[text_column]
            for row in reader:
                lines.record = 0  # the bytes of the next record start here
                if not row:
                    continue  # a blank line
                label = row[li] if li < len(row) else ""
                if not label:
                    raise DataError(f"{path}: no label in line {reader.line_num} (column {label_column!r})")
                yield reader.line_num, label, row[ti] if ti < len(row) else ""
        except csv.Error:  # its words may quote the file
            raise DataError(
                f"{path}: not a readable CSV file (line {lines.number}: a quote, or a field over {MAX_TEXT_BYTES} bytes, that the csv rules refuse)"
            ) from None


def _jsonl_rows(path: Path, label_column: str, text_column: str, guard: FileGuard) -> Iterator[tuple[int, str | int, str]]:
    """(line, label, text) of every object of a JSONL file."""
    label_kind: type | None = None
    with open_source(path, guard) as f:
        lines = TextLines(f, path, MAX_TEXT_BYTES)
        for line in lines:
            number, lines.record = lines.number, 0
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):  # its words quote the line
                raise DataError(f"{path}: line {number} is not valid JSON") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {number} is not a JSON object")
            label, text = row.get(label_column), row.get(text_column, "")
            if label is None or label == "":
                raise DataError(f"{path}: no label in line {number} (field {label_column!r}; set data.label_column)")
            if isinstance(label, float) and label.is_integer():
                label = int(label)
            if isinstance(label, bool) or not isinstance(label, (int, str)):
                raise DataError(f"{path}: line {number}: field {label_column!r} is neither text nor an integer")
            if label_kind is None:
                label_kind = type(label)
            elif type(label) is not label_kind:
                raise DataError(
                    f"{path}: line {number}: field {label_column!r} is {'text' if isinstance(label, str) else 'a number'} "
                    f"here, {'text' if label_kind is str else 'a number'} in the lines before"
                )
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise DataError(f"{path}: line {number}: field {text_column!r} is not text")
            yield number, label, text


def _parquet_chunks(path: Path, label_column: str, text_column: str, guard: FileGuard, chunk_rows: int) -> Iterator[TableChunk]:
    columns: list[int] = []

    def pick(header: Any) -> list[int]:
        columns[:] = [tables._named_once(header.names, label_column, path, "label_column"), tables._named_once(header.names, text_column, path, "text_column")]
        if tables._kind(header.types[columns[1]]) != "text":
            raise DataError(f"{path}: column {text_column!r} does not hold text")
        return columns

    for _, batch, before in tables._batches(path, guard, chunk_rows, pick):
        label, text = (batch[i] for i in columns)
        y = tables._labels(label, label_column, path, before + 1)
        x = np.array(["" if t is None else t for t in text.to_pylist()], dtype=object)
        yield TableChunk(x, y, before + 1)


def _chunked(rows: Iterator[tuple[int, Any, str]], chunk_rows: int) -> Iterator[TableChunk]:
    labels: list = []
    texts: list[str] = []
    first = 1
    for _, label, text in rows:
        labels.append(label)
        texts.append(text)
        if len(texts) == chunk_rows:
            yield TableChunk(np.array(texts, dtype=object), np.array(labels), first)
            first += len(texts)
            labels, texts = [], []
    if texts:
        yield TableChunk(np.array(texts, dtype=object), np.array(labels), first)


# --------------------------------------------------------------------------- readers
def iter_text(
    path: str | Path,
    format: TextFormat | None = None,
    label_column: str | None = None,
    text_column: str | None = None,
    guard: FileGuard = ANYWHERE,
    chunk_rows: int = 8192,
) -> Iterator[TableChunk]:
    """The rows of a CSV, JSONL or Parquet text file (``format``; None: by its name) in chunks
    of at most ``chunk_rows`` rows: ``x`` the texts (object array of str), ``y`` the labels."""
    path = Path(path)
    kind = format or text_format_of(path)
    label_column, text_column = label_column or tables.DEFAULT_LABEL, text_column or DEFAULT_TEXT
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if kind == "parquet":
        yield from _parquet_chunks(path, label_column, text_column, guard, chunk_rows)
        return
    if kind not in ("csv", "jsonl"):
        raise DataError(f"{path}: text comes as csv, jsonl or parquet, not {kind!r}")
    rows = _csv_rows if kind == "csv" else _jsonl_rows
    try:
        yield from _chunked(rows(path, label_column, text_column, guard), chunk_rows)
    except (OSError, EOFError) as e:  # a damaged .gz / .bz2
        raise DataError(f"{path}: not readable ({why(e)})") from None


def read_text(
    path: str | Path,
    format: TextFormat | None = None,
    label_column: str | None = None,
    text_column: str | None = None,
    guard: FileGuard = ANYWHERE,
    **_: Any,
) -> Arrays:
    """A whole text file (the ``text`` format of ``datasets.load``): ``x`` the texts (1-D object
    array of str), ``y`` the labels."""
    chunks = list(iter_text(path, format, label_column, text_column, guard, READ_CHUNK_ROWS))
    if not chunks:
        raise DataError(f"{path}: no rows")
    return Arrays(np.concatenate([c.x for c in chunks]), np.concatenate([c.y for c in chunks]))
