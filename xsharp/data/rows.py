"""Raw rows to predict on or to check an export with: a trained model's own split of the data it
was trained on (read as training read it, from its saved spec), or every row of any file or
imported dataset xsharp reads.

Given what the model takes (``serving.inputs.input_of``), rows without labels are read too: a
CSV of only the text column (text models) or of only the feature columns (table models), a
folder of loose image, audio or text files (no class folders; one row a file, in name order),
and text lines on standard input (``-``). Labels are then left out (``y`` None), as they are
when a label column is there but empty."""

from __future__ import annotations

import csv
import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xsharp.fileguard import ANYWHERE, DataError
from xsharp.serving.inputs import InputError, ModelInput, rows_from_file

from . import tables
from .audio_folder import AUDIO_SUFFIXES
from .catalog import Catalog, DatasetRef, local_owner
from .dataset import load
from .formats import FORMATS, format_of
from .images import IMAGE_SUFFIXES
from .named import NAMED
from .source_files import MAX_TEXT_BYTES, TextLines, open_source, why
from .stream import ShardedSplit
from .wav import parse_wav_name


@dataclass
class RawRows:
    x: np.ndarray
    y: np.ndarray | None  # labels, when the source has them
    source: str  # what was read, in words
    names: list[str] | None = None  # what each row came from (a folder's files), when not the row's place


_READER_OPTIONS = ("labels", "sample_rate", "duration", "label_column", "text_column", "size", "resize", "channels", "feature_columns")


def _same_file(a: str, b: str | None) -> bool:
    return b is not None and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def load_rows(data: str, split: str, saved_spec: dict | None, model_input: ModelInput | None = None, classes: list[str] | None = None) -> RawRows:
    """Raw rows (and labels when known): the training data's own split when ``data`` names the
    training source, otherwise every row of a file in any data format xsharp reads. With
    ``model_input`` (what the model takes) and ``classes`` (its class names), rows without
    labels are read too (see the module's doc); ``-`` is standard input's lines of text."""
    rows = _load_rows(data, split, saved_spec, model_input, classes)
    if rows.y is not None and rows.y.dtype.kind in "UO" and all(str(v) == "" for v in rows.y.tolist()):
        rows.y = None  # a label column with no labels in it: rows to predict on
    return rows


def _load_rows(data: str, split: str, saved_spec: dict | None, model_input: ModelInput | None, classes: list[str] | None) -> RawRows:
    d = (saved_spec or {}).get("data", {})
    reader = {k: d.get(k) for k in _READER_OPTIONS}
    if data == "-":
        return _stdin_rows(model_input)
    if data in NAMED or _same_file(data, d.get("path")):
        named = data in NAMED
        ds = load(
            data if named else None,
            None if named else data,
            None if named else d.get("format"),
            test_fraction=d.get("test_fraction", 0.2),
            validation_fraction=d.get("validation_fraction", 0.1),
            limit=d.get("limit"),
            seed=(saved_spec or {}).get("seed", 0),
            test_speakers=None if named else d.get("test_speakers"),
            **reader,
        )
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        return RawRows(x, y, f"{data} ({split} split, same split as training)")
    path = Path(data).expanduser()
    if not path.exists() and DatasetRef.looks_like(data):  # an imported dataset: its split, as stored
        return _imported_rows(data, split)
    if not path.exists():
        raise DataError(f"{data}: neither a dataset name ({', '.join(NAMED)}) nor an existing file")
    if model_input is not None:
        unlabelled = _rows_for_model(path, model_input, reader, classes or [])
        if unlabelled is not None:
            return unlabelled
    if path.suffix == ".npy":
        return RawRows(np.load(path, allow_pickle=False), None, str(path))
    fmt = format_of(path)
    if fmt is not None and fmt != "npz":  # every row of an IDX file, WAV folder or CSV
        arrays = FORMATS[fmt](path, **{k: v for k, v in reader.items() if v is not None})
        if split == "test" and arrays.x_test is not None:
            return RawRows(arrays.x_test, arrays.y_test, f"{path} [test]")
        return RawRows(arrays.x, arrays.y, str(path))
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise DataError(f"{path}: not a readable .npz/.npy file ({e})") from None
    for xk, yk in (("x", "y"), (f"x_{split}", f"y_{split}")):
        if xk in arrays:
            return RawRows(arrays[xk], arrays.get(yk), f"{path} [{xk}]")
    raise DataError(f"{path}: expected an array x (or x_{split}); found {sorted(arrays)}")


def _imported_rows(ref: str, split: str) -> RawRows:
    catalog = Catalog.local()
    m = catalog.find(ref, local_owner())
    parts = list(ShardedSplit(catalog.path_of(m), m, split))
    if not parts:
        raise DataError(f"{m.ref}: no {split} rows")
    return RawRows(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]), f"{m.ref} ({split} split)")


# --------------------------------------------------------------------------- rows without labels
_TEXT_SUFFIXES = (".txt", ".text", ".md")
MAX_LOOSE_ROWS = 100_000  # files in a folder, or lines on standard input, read as rows to predict on
MAX_LOOSE_FILE = 64 << 20  # bytes of one loose file: an image or a few minutes of audio


def _stdin_rows(model_input: ModelInput | None) -> RawRows:
    """Standard input's lines, one text a line (blank lines left out)."""
    if model_input is not None and model_input.kind != "text":
        raise DataError(f"--data -: standard input gives lines of text, and this model takes {model_input.kind} rows; give a file or folder")
    lines, texts = TextLines(sys.stdin.buffer, Path("standard input")), []
    for line in lines:  # each line is one text, capped alone (the reader's cap counts a record's bytes)
        lines.record = 0
        if line.strip():
            texts.append(line.rstrip("\r\n"))
            if len(texts) > MAX_LOOSE_ROWS:
                raise DataError(f"--data -: over {MAX_LOOSE_ROWS} lines; predict on a file instead")
    if not texts:
        raise DataError("--data -: no lines of text on standard input")
    return RawRows(np.array(texts, dtype=object), None, f"standard input ({len(texts)} lines)")


def _rows_for_model(path: Path, model_input: ModelInput, reader: dict, classes: list[str]) -> RawRows | None:
    """Rows ``path`` holds for a model that takes ``model_input``, with labels where there are
    some; None where the usual readers serve (labelled folders, other formats)."""
    name = path.name.lower().removesuffix(".gz").removesuffix(".bz2")
    if path.is_dir():
        return _loose_files(path, model_input, classes)
    if model_input.kind == "text" and name.endswith(".csv"):
        return _text_csv(path, reader.get("text_column") or "text", reader.get("label_column") or "label")
    if model_input.kind == "table" and name.endswith((".csv", ".parquet", ".pq")):
        return _table(path, reader.get("label_column") or "label", reader.get("feature_columns"))
    return None


def _loose_files(folder: Path, model_input: ModelInput, classes: list[str]) -> RawRows | None:
    """Every image, audio or text file directly in ``folder``, one row a file, in name order;
    None where the folder is laid out for a labelled reader (class folders, or WAV files named
    ``{label}_{speaker}_{index}.wav`` whose labels are all the model's classes)."""
    suffixes = {"image": IMAGE_SUFFIXES, "audio": AUDIO_SUFFIXES, "text": _TEXT_SUFFIXES}.get(model_input.kind)
    if suffixes is None:
        return None
    with os.scandir(folder) as entries:  # counted as they are read: a folder of millions is refused, not listed
        found = list(itertools.islice(entries, 4 * MAX_LOOSE_ROWS + 1))
    if len(found) > 4 * MAX_LOOSE_ROWS:
        raise DataError(f"{folder}: over {4 * MAX_LOOSE_ROWS} entries; predict on at most {MAX_LOOSE_ROWS} files at a time")
    files = sorted(Path(e.path) for e in found if not e.name.startswith(".") and Path(e.name).suffix.lower() in suffixes and e.is_file())
    if len(files) > MAX_LOOSE_ROWS:
        raise DataError(f"{folder}: {len(files)} files; predict on at most {MAX_LOOSE_ROWS} at a time")
    if not files:
        if format_of(folder) is not None:
            return None  # class folders, IDX files: the usual readers
        raise DataError(f"{folder}: no {' / '.join(sorted(suffixes))} files in this folder for a model that takes {model_input.kind}")
    if model_input.kind == "audio" and _labelled_wavs(files, classes):
        return None
    rows = []
    for f in files:
        try:
            with open(f, "rb") as handle:
                data = handle.read(MAX_LOOSE_FILE + 1)  # never more than the cap, whatever the file's size
            if len(data) > MAX_LOOSE_FILE:
                raise DataError(f"{f}: over {MAX_LOOSE_FILE} bytes")
            rows.append(rows_from_file(data, model_input, str(f)))
        except InputError as e:
            raise DataError(f"{f}: {e.problem}") from None
        except OSError as e:
            raise DataError(f"{f}: cannot read ({e.strerror})") from None
    return RawRows(np.concatenate(rows), None, f"{folder} ({len(files)} files)", names=[f.name for f in files])


def _labelled_wavs(files: list[Path], classes: list[str]) -> bool:
    """Every file a ``.wav`` named ``{label}_{speaker}_{index}.wav`` with a label among ``classes``."""
    parsed = [parse_wav_name(f.name) for f in files]
    return all(p is not None and p[0] in classes for p in parsed)


def _text_csv(path: Path, text_column: str, label_column: str) -> RawRows:
    """A CSV's text column; its label column too, where it is there and holds labels."""
    csv.field_size_limit(MAX_TEXT_BYTES)
    texts, labels = [], []
    try:
        with open_source(path, ANYWHERE) as f:
            lines = TextLines(f, path)
            rows = csv.DictReader(lines)
            columns = rows.fieldnames or []
            if text_column not in columns:
                raise DataError(
                    f"{path}: no column {text_column!r} ({len(columns)} columns in its header line); the model reads its texts from {text_column!r}"
                )
            labelled = label_column in columns
            lines.record = 0
            for row in rows:
                lines.record = 0
                texts.append(row[text_column] or "")
                if labelled:
                    labels.append(row[label_column] or "")
    except (OSError, EOFError) as e:  # EOFError: a .gz or .bz2 cut short
        raise DataError(f"{path}: not a readable CSV file ({why(e)})") from None
    except csv.Error:  # its words may quote the file
        raise DataError(f"{path}: not a readable CSV file (line {lines.number}: a quote or a field the csv rules refuse)") from None
    if not texts:
        raise DataError(f"{path}: no rows")
    y = np.array(labels) if labels and any(labels) else None
    if y is not None and not all(labels):
        raise DataError(f"{path}: column {label_column!r} has no label in data row {labels.index('') + 1}; give every row a label, or none")
    return RawRows(np.array(texts, dtype=object), y, str(path))


def _table(path: Path, label_column: str, feature_columns: list[str] | None) -> RawRows:
    """A table's feature columns (those the model was trained on: ``feature_columns``, else every
    column but the label's); the label column too, where it is there and holds labels."""
    chunks = list(tables._TableReader(path, label_column, feature_columns, ANYWHERE, tables.READ_CHUNK_ROWS, labels_optional=True))
    if not chunks:
        raise DataError(f"{path}: no rows")
    x = np.concatenate([c.x for c in chunks])
    y = None if any(c.y is None for c in chunks) else np.concatenate([c.y for c in chunks])
    return RawRows(x, y, str(path))
