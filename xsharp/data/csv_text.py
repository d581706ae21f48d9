"""The ``csv`` format: a CSV file (``.csv``, ``.csv.gz``, ``.csv.bz2``) with a header line, one
label column and one text column. The ``text`` format (:mod:`xsharp.data.text`) reads JSONL and
Parquet too; this one stays as it was."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from xsharp.fileguard import ANYWHERE, DataError, FileGuard

from .arrays import Arrays
from .source_files import MAX_TEXT_BYTES, TextLines, open_source, why


def read_csv_text(path: Path, label_column: str = "label", text_column: str = "text", guard: FileGuard = ANYWHERE, **_: Any) -> Arrays:
    """A CSV file (``.csv``, ``.csv.gz``, ``.csv.bz2``) with a header: one label column and one
    text column; rows are strings, turned into numbers by the spec's ``features``."""
    csv.field_size_limit(MAX_TEXT_BYTES)
    line = 0
    try:
        with open_source(path, guard) as f:
            lines = TextLines(f, path)
            reader = csv.DictReader(lines)
            columns = reader.fieldnames or []
            missing = [c for c in (label_column, text_column) if c not in columns]
            if missing:
                field = "label_column" if missing[0] == label_column else "text_column"
                raise DataError(f"{path}: missing column {missing[0]!r} ({len(columns)} columns in its header line; set data.{field})")
            labels, texts = [], []
            lines.record = 0
            for row in reader:
                line = reader.line_num
                lines.record = 0
                labels.append(row[label_column] or "")
                texts.append(row[text_column] or "")
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable CSV file (after line {line}: {why(e)})") from None
    except csv.Error:  # its words may quote the file
        raise DataError(f"{path}: not a readable CSV file (line {lines.number}: a quote or a field over {MAX_TEXT_BYTES} bytes the csv rules refuse)") from None
    if not texts:
        raise DataError(f"{path}: no rows")
    return Arrays(np.array(texts, dtype=object), np.array(labels))
