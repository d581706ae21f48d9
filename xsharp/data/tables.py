"""Tables: CSV (``.csv``, ``.csv.gz``, ``.csv.bz2``, with a header line) or Parquet, one label
column and feature columns (by default every column but the label).

Read with pyarrow, which decides each column's type: from a CSV's first block (a few MiB) of
rows, from a Parquet file's schema. Number columns (integers, floats, booleans, decimals) become
float32, an empty or missing cell NaN; text columns are categories, kept as strings (None where
missing) for the spec's ``onehot`` step to turn into numbers. With any text column ``x`` is a
2-D ``object`` array (numbers as Python floats), else a 2-D float32 array. Other column types
(dates, times, bytes, nested values) are refused: leave them out with ``feature_columns``.

Missing numbers are not refused here: ``features.prepare`` refuses them unless the spec has an
``impute`` step. Labels are integers (their own class index) or text (class names); a row
with no label is refused.

Errors name the file, the column (by name where the user named it, else by its place in the
header) and the row, never a cell's content.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xsharp.fileguard import ANYWHERE, DataError, FileGuard

from .arrays import Arrays
from .source_files import open_source, why

MAX_COLUMNS = 65536  # columns of a table's header
CSV_BLOCK_BYTES = 4 << 20  # a CSV is parsed in blocks this big; the first sets each column's type
READ_CHUNK_ROWS = 65536  # rows per piece when read_table reads a whole table
DEFAULT_LABEL = "label"
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass
class TableChunk:
    """A run of consecutive rows of a table or text file."""

    x: np.ndarray  # features (n, k) float32 or object; texts (n,) object
    y: np.ndarray | None  # raw label values: int64, or str; None: rows without labels (a reader with labels_optional)
    first_row: int  # 1-based data row (not counting a header) of the first row here


def is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(PARQUET_SUFFIXES)


# --------------------------------------------------------------------------- record batches
def _failure(path: Path, e: BaseException, rows_before: int) -> DataError:
    """A pyarrow failure in our own words (pyarrow's quote the file: a row, a cell)."""
    said = str(e)
    column = re.search(r"column #(\d+)", said)
    place = f" (column {int(column.group(1)) + 1} of its header)" if column else ""
    if "conversion error" in said:
        return DataError(
            f"{path}: a cell after data row {rows_before} does not fit its column's type{place}; "
            f"a CSV column's type (numbers or text) is set by its first {CSV_BLOCK_BYTES >> 20} MiB of rows"
        )
    if "Expected" in said and "columns" in said:
        return DataError(f"{path}: a row after data row {rows_before} has a different number of fields than the header line")
    if "Empty CSV" in said:
        return DataError(f"{path}: empty: no header line")
    if "straddling" in said or "block size" in said:
        return DataError(f"{path}: a line longer than {CSV_BLOCK_BYTES >> 20} MiB (after data row {rows_before})")
    kind = "Parquet" if is_parquet(path) else "CSV"
    return DataError(f"{path}: not a readable {kind} file (after data row {rows_before}: {why(e)})")


@dataclass
class _Header:
    names: list[str]  # every column, in order
    types: list[Any]  # their pyarrow types


@contextlib.contextmanager
def _opened(path: Path, guard: FileGuard, chunk_rows: int) -> Iterator[tuple[_Header, Any]]:
    """The header and ``read(columns) -> record batches`` (dicts of column index -> array);
    Parquet reads only those columns, a CSV parses all of them."""
    if is_parquet(path):
        import pyarrow.parquet as pq

        with guard.open(path) as raw:
            parquet = pq.ParquetFile(raw)
            header = _Header(list(parquet.schema_arrow.names), list(parquet.schema_arrow.types))

            def read(columns: list[int]):
                for batch in parquet.iter_batches(batch_size=chunk_rows, columns=[header.names[i] for i in columns]):
                    yield dict(zip(columns, batch.columns))

            yield header, read
        return
    import pyarrow.csv as csv

    with open_source(path, guard) as f:
        options = csv.ConvertOptions(strings_can_be_null=True)
        reader = csv.open_csv(f, read_options=csv.ReadOptions(block_size=CSV_BLOCK_BYTES), convert_options=options)
        header = _Header(list(reader.schema.names), list(reader.schema.types))

        def read(columns: list[int]):
            for batch in reader:
                yield {i: batch.column(i) for i in columns}

        yield header, read


def _batches(path: Path, guard: FileGuard, chunk_rows: int, pick) -> Iterator[tuple[_Header, dict[int, Any], int]]:
    """(the header, a batch of at most ``chunk_rows`` rows as {column index: array}, data rows
    before it), with pyarrow's failures in our words. ``pick(header) -> column indices`` to read."""
    rows = 0
    try:
        with _opened(path, guard, chunk_rows) as (header, read):
            if len(header.names) > MAX_COLUMNS:
                raise DataError(f"{path}: {len(header.names)} columns, over the cap of {MAX_COLUMNS}")
            for batch in read(pick(header)):
                n = len(next(iter(batch.values())))
                for lo in range(0, n, chunk_rows):
                    size = min(chunk_rows, n - lo)
                    yield header, {i: a.slice(lo, size) for i, a in batch.items()}, rows
                    rows += size
    except DataError:
        raise
    except Exception as e:
        raise _failure(path, e, rows) from None


# --------------------------------------------------------------------------- columns
def _named_once(names: list[str], name: str, path: Path, option: str) -> int:
    hits = [i for i, n in enumerate(names) if n == name]
    if not hits:
        raise DataError(f"{path}: no column {name!r} ({len(names)} columns in its header; set data.{option})")
    if len(hits) > 1:
        raise DataError(f"{path}: the header names column {name!r} {len(hits)} times")
    return hits[0]


@dataclass
class _Columns:
    label: int | None  # None: no label column (a reader with labels_optional)
    features: list[int]
    named: bool  # the user named the feature columns (errors may then say their names)


def _choose(names: list[str], label_column: str, feature_columns: list[str] | None, path: Path, labels_optional: bool = False) -> _Columns:
    label = None if labels_optional and label_column not in names else _named_once(names, label_column, path, "label_column")
    if feature_columns is None:
        features = [i for i in range(len(names)) if i != label]
    else:
        features = [_named_once(names, c, path, "feature_columns") for c in feature_columns]
        if label in features:
            raise DataError(f"{path}: data.feature_columns lists the label column {label_column!r}")
    if not features:
        raise DataError(f"{path}: no feature columns beside the label column {label_column!r}")
    return _Columns(label, features, feature_columns is not None)


def _kind(t: Any) -> str:
    """``number``, ``text``, ``bytes`` or ``other`` for a pyarrow type."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t) or pa.types.is_null(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _: False)(t):
        return "text"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytes"
    return "other"


def _numbers(a: Any) -> np.ndarray:
    """A pyarrow array of numbers as float64, NaN where a value is missing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(a.type):
        a = a.dictionary_decode()
    return pc.fill_null(a.cast(pa.float64(), safe=False), np.nan).to_numpy(zero_copy_only=False)


def _labels(a: Any, name: str, path: Path, first_row: int) -> np.ndarray:
    """Label values: int64 (integers, booleans, whole floats) or str."""
    if a.null_count:
        row = first_row + int(np.flatnonzero(np.asarray(a.is_null()))[0])
        raise DataError(f"{path}: column {name!r} has no label in data row {row}")
    kind = _kind(a.type)
    if kind == "text":
        return np.array([str(v) for v in a.to_pylist()], dtype=str)
    if kind != "number":
        raise DataError(f"{path}: column {name!r} holds neither numbers nor text; labels are class names or integers")
    values = _numbers(a)
    whole = values == np.round(values)
    if not whole.all():
        row = first_row + int(np.flatnonzero(~whole)[0])
        raise DataError(f"{path}: column {name!r} holds a fraction in data row {row}; labels are class names or integers")
    return values.astype(np.int64)


def _features(columns: dict[int, Any], chosen: _Columns, header: _Header, path: Path) -> np.ndarray:
    names, types = header.names, header.types
    kinds = [_kind(types[i]) for i in chosen.features]
    for i, kind in zip(chosen.features, kinds):
        if kind in ("number", "text"):
            continue
        ref = f"column {names[i]!r}" if chosen.named else f"column {i + 1} of its header"
        what = "is not UTF-8 text" if kind == "bytes" else f"holds {types[i]} values, neither numbers nor text"
        raise DataError(f"{path}: {ref} {what}; leave it out with data.feature_columns")
    n = len(columns[chosen.features[0]])
    if "text" not in kinds:
        x = np.empty((n, len(chosen.features)), dtype=np.float32)
        for j, i in enumerate(chosen.features):
            x[:, j] = _numbers(columns[i])
        return x
    x = np.empty((n, len(chosen.features)), dtype=object)
    for j, (i, kind) in enumerate(zip(chosen.features, kinds)):
        x[:, j] = columns[i].to_pylist() if kind == "text" else _numbers(columns[i]).tolist()
    return x


# --------------------------------------------------------------------------- readers
class _TableReader:
    """The chunks of one table; ``columns``: the feature columns' names, once iteration began."""

    def __init__(
        self, path: Path, label_column: str | None, feature_columns: list[str] | None, guard: FileGuard, chunk_rows: int, labels_optional: bool = False
    ):
        """``labels_optional``: a table without the label column, or with none of its cells filled
        in a chunk, gives that chunk's rows with ``y`` None (rows to predict on)."""
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        self.path, self.label_column, self.feature_columns = path, label_column or DEFAULT_LABEL, feature_columns
        self.labels_optional = labels_optional
        self.guard, self.chunk_rows = guard, chunk_rows
        self.columns: list[str] = []

    def __iter__(self) -> Iterator[TableChunk]:
        chosen: _Columns | None = None

        def pick(header: _Header) -> list[int]:
            nonlocal chosen
            chosen = _choose(header.names, self.label_column, self.feature_columns, self.path, self.labels_optional)
            self.columns = [header.names[i] for i in chosen.features]
            return chosen.features if chosen.label is None else [chosen.label, *chosen.features]

        for header, columns, before in _batches(self.path, self.guard, self.chunk_rows, pick):
            labels = None if chosen.label is None else columns[chosen.label]
            unlabelled = labels is None or (self.labels_optional and labels.null_count == len(labels))
            y = None if unlabelled else _labels(labels, self.label_column, self.path, before + 1)
            yield TableChunk(_features(columns, chosen, header, self.path), y, before + 1)


def iter_table(
    path: str | Path,
    label_column: str | None = None,
    feature_columns: list[str] | None = None,
    guard: FileGuard = ANYWHERE,
    chunk_rows: int = 8192,
) -> Iterator[TableChunk]:
    """A table's rows in chunks of at most ``chunk_rows`` rows, in file order."""
    return iter(_TableReader(Path(path), label_column, feature_columns, guard, chunk_rows))


def first_missing(x: np.ndarray, columns: list[str]) -> dict[str, int]:
    """Each number column with a missing value (NaN) -> the first such data row, 1-based."""
    out = {}
    for j, name in enumerate(columns):
        column = x[:, j]
        if column.dtype == object:
            if not all(isinstance(v, float) for v in column):
                continue  # a text column: a missing category is onehot's business
            column = column.astype(np.float64)
        missing = np.isnan(column)
        if missing.any():
            out[name] = int(np.argmax(missing)) + 1
    return out


def read_table(
    path: str | Path,
    label_column: str | None = None,
    feature_columns: list[str] | None = None,
    guard: FileGuard = ANYWHERE,
    **_: Any,
) -> Arrays:
    """A whole table (the ``table`` format of ``datasets.load``): ``x`` (n, k) float32, or
    object when a feature column holds text; ``y`` the label column's values."""
    path = Path(path)
    reader = _TableReader(path, label_column, feature_columns, guard, READ_CHUNK_ROWS)
    chunks = list(reader)
    if not chunks:
        raise DataError(f"{path}: no rows")
    x = np.concatenate([c.x for c in chunks])
    y = np.concatenate([c.y for c in chunks])
    return Arrays(x, y, columns=reader.columns, first_missing=first_missing(x, reader.columns))
