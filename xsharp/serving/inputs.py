"""What a trained model takes as one raw row, and raw rows made from a request: JSON rows, or one
uploaded image, WAV/FLAC or text file.

A model reads the rows its training data had before the saved preprocessing (``data.features``):

- ``numbers``: arrays of ``raw_shape`` (a flat list of the same count of values is taken too);
- ``image``: the same, ``(H, W)`` grey or ``(C, H, W)``, values in [0, 1]; an uploaded PNG, JPEG,
  BMP or WebP is decoded and resized as the model's image folders were (``data.resize``, default
  squash), grey levels / 255, used as stored (no inversion);
- ``audio``: waveforms of ``raw_shape[0]`` samples at the feature step's sample rate; an uploaded
  WAV or FLAC is resampled and cut or zero-padded to that length;
- ``text``: strings; an uploaded text file (UTF-8) is one row;
- ``table``: rows of a table with text columns, one value per column: a number, a string or null.

Everything a client sends is checked before anything is sized from it, and each problem is an
:class:`InputError` naming the field (``rows[3][1]``, ``file``), never echoing the content.
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from xsharp.data.audio_folder import decode_audio_bytes
from xsharp.data.images import ImageOptions, decode_image_bytes
from xsharp.fileguard import DataError

MAX_ROWS = 1024  # rows in one request
MAX_VALUES = 4_000_000  # numbers in one request's rows (16 MB as float32)
MAX_TEXT_BYTES = 1 << 20  # one text, as the text readers cap a line

TEXT_STEPS = frozenset({"bow", "tfidf", "word2vec"})
AUDIO_STEPS = frozenset({"logmel", "mfcc"})

Kind = Literal["numbers", "image", "audio", "text", "table"]


class InputError(ValueError):
    """A request's rows or file the model cannot take: ``field`` and what is wrong with it."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class ModelInput:
    kind: Kind
    raw_shape: tuple[int, ...]  # one raw row; () for a text
    sample_rate: int | None = None  # audio: the rate the waveforms were read at
    resize: str = "squash"  # image: how an upload is brought to (H, W)
    text_columns: tuple[int, ...] = ()  # table: the columns that hold categories (strings)
    missing_allowed: bool = False  # an impute step fills missing numbers (null)

    @property
    def values(self) -> int:
        """Numbers in one row (a text: 1)."""
        return math.prod(self.raw_shape)

    @property
    def uploads(self) -> str | None:
        """What file an upload may be, in words (None: JSON rows only)."""
        return {"image": "a PNG, JPEG, BMP or WebP image", "audio": "a WAV or FLAC file", "text": "a UTF-8 text file"}.get(self.kind)

    def describe(self) -> dict:
        return {"kind": self.kind, "raw_shape": list(self.raw_shape), "sample_rate": self.sample_rate, "uploads": self.uploads}


def input_of(model: Any) -> ModelInput:
    """What ``model`` (an :class:`xsharp.algos.Model`) takes, from its saved preprocessing and spec."""
    pipeline = model.pipeline
    steps = list(pipeline.steps) if pipeline else []
    kinds = {s.kind for s in steps}
    if kinds & TEXT_STEPS:
        return ModelInput("text", ())
    if pipeline and pipeline.raw_shape is None:
        raise InputError("model", "saved before xsharp kept the shape of a raw row beside its feature steps; train it again to serve it")
    raw = tuple(int(d) for d in (pipeline.raw_shape if pipeline else model.in_shape))
    missing = "impute" in kinds
    if "onehot" in kinds:
        onehot = next(s for s in steps if s.kind == "onehot")
        return ModelInput("table", raw, text_columns=tuple(int(j) for j in onehot.state["columns"]), missing_allowed=missing)
    audio = [s for s in steps if s.kind in AUDIO_STEPS]
    if audio and len(raw) == 1:
        return ModelInput("audio", raw, sample_rate=int(audio[0].options.sample_rate), missing_allowed=missing)
    if len(raw) == 2 or (len(raw) == 3 and raw[0] in (1, 3)):
        resize = ((model.spec or {}).get("data") or {}).get("resize") or "squash"
        return ModelInput("image", raw, resize=str(resize), missing_allowed=missing)
    return ModelInput("numbers", raw, missing_allowed=missing)


# --------------------------------------------------------------------------- JSON rows
def rows_from_json(rows: Any, spec: ModelInput, field: str = "rows", may_hold_booleans: bool = True) -> np.ndarray:
    """``rows`` (a request's parsed JSON) as a batch of raw rows the model's pipeline takes.
    Numbers are converted by numpy in one pass; only rows it refuses are walked value by value,
    to say which value is wrong (and every row, unless the caller knows the request holds no
    ``true`` or ``false``: numpy would take those as 1 and 0)."""
    if not isinstance(rows, list):
        raise InputError(field, f"a list of rows expected, got {_type(rows)}")
    if not 1 <= len(rows) <= MAX_ROWS:
        raise InputError(field, f"1 to {MAX_ROWS} rows, got {len(rows)}")
    if spec.kind == "text":
        return _texts(rows, field)
    if spec.kind == "table":
        return _table_rows(rows, spec, field)
    if len(rows) * spec.values > MAX_VALUES:
        raise InputError(field, f"{len(rows)} rows of {spec.values} values is over the cap of {MAX_VALUES} values a request")
    if not may_hold_booleans:
        fast = _all_at_once(rows, spec)
        if fast is not None:
            return fast
    out = np.empty((len(rows), spec.values), dtype=np.float32)
    for i, row in enumerate(rows):
        out[i] = _numbers(row, spec, f"{field}[{i}]")
    return out.reshape((len(rows), *spec.raw_shape))


def _all_at_once(rows: list, spec: ModelInput) -> np.ndarray | None:
    """Every row converted by numpy at once, if they all are numbers in the model's shape (or
    flat) and in float32's range; None otherwise (the rows are then checked one by one)."""
    if not all(type(r) is list for r in rows):
        return None
    try:
        a = np.asarray(rows)  # no dtype: strings, booleans, nulls and huge integers do not pass as numbers
    except (ValueError, TypeError, OverflowError):
        return None
    if a.dtype.kind not in "iuf":
        return None
    a = a.astype(np.float64)
    if a.shape[1:] not in (spec.raw_shape, (spec.values,)):
        return None
    finite = np.isfinite(a)
    if not finite.all() and not (spec.missing_allowed and np.isnan(a[~finite]).all()):
        return None
    if np.abs(np.where(finite, a, 0.0)).max(initial=0.0) > 3.0e38:
        return None
    return a.astype(np.float32).reshape((len(rows), *spec.raw_shape))


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _numbers(row: Any, spec: ModelInput, field: str) -> np.ndarray:
    """One row of numbers, nested as ``raw_shape`` or flat."""
    if not isinstance(row, list):
        raise InputError(field, f"a list of {spec.values} numbers (shape {list(spec.raw_shape)}) expected, got {_type(row)}")
    count = _count_leaves(row, spec.values, field)
    if count != spec.values:
        raise InputError(field, f"{count} values; the model takes {spec.values} (shape {list(spec.raw_shape)})")
    try:
        a = np.asarray(row, dtype=np.float64)
    except OverflowError:
        raise InputError(field, "holds a value beyond float32's range") from None
    except (ValueError, TypeError):
        raise InputError(field, f"not a list nested as {list(spec.raw_shape)} (or flat) of numbers") from None
    if a.shape not in (spec.raw_shape, (spec.values,)):
        raise InputError(field, f"shape {list(a.shape)}; the model takes {list(spec.raw_shape)} (or {spec.values} values flat)")
    bad = ~np.isfinite(a)
    if bad.any() and not (spec.missing_allowed and np.isnan(a[bad]).all()):
        raise InputError(field, "holds a value that is not a finite number")
    if np.abs(a[~bad]).max(initial=0.0) > 3.0e38:
        raise InputError(field, "holds a value beyond float32's range")
    return a.reshape(-1)


def _count_leaves(row: list, limit: int, field: str) -> int:
    """Values nested in ``row``, stopping past ``limit``; refuses what is not a number or null."""
    count, stack = 0, [row]
    while stack:
        node = stack.pop()
        for v in node:
            if isinstance(v, list):
                stack.append(v)
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) and v is not None:
                raise InputError(field, f"holds {_type(v)} where a number belongs")
            count += 1
            if count > limit:
                return count
    return count


def _texts(rows: list, field: str) -> np.ndarray:
    for i, t in enumerate(rows):
        if not isinstance(t, str):
            raise InputError(f"{field}[{i}]", f"a text (string) expected, got {_type(t)}")
        if len(t) > MAX_TEXT_BYTES // 4 and len(t.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
            raise InputError(f"{field}[{i}]", f"over {MAX_TEXT_BYTES} bytes")
    return np.array(rows, dtype=object)


def _table_rows(rows: list, spec: ModelInput, field: str) -> np.ndarray:
    (width,) = spec.raw_shape
    if len(rows) * width > MAX_VALUES:
        raise InputError(field, f"{len(rows)} rows of {width} values is over the cap of {MAX_VALUES} values a request")
    text = set(spec.text_columns)
    out = np.empty((len(rows), width), dtype=object)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else _type(row)
            raise InputError(f"{field}[{i}]", f"a list of {width} values (one per column) expected, got {got}")
        for j, v in enumerate(row):
            where = f"{field}[{i}][{j}]"
            if j in text:
                if v is not None and not isinstance(v, str):
                    raise InputError(where, f"column {j} holds categories: a string or null expected, got {_type(v)}")
                if isinstance(v, str) and len(v) > MAX_TEXT_BYTES // 4:
                    raise InputError(where, f"a category of over {MAX_TEXT_BYTES // 4} characters")
                out[i, j] = v
            elif v is None:
                if not spec.missing_allowed:
                    raise InputError(where, f"column {j} is missing a number, and the model has no impute step")
                out[i, j] = math.nan
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InputError(where, f"column {j} holds numbers: a number expected, got {_type(v)}")
            elif abs(v) > 3.0e38 or v != v:  # exact for huge integers too (no float conversion); NaN is not equal to itself
                raise InputError(where, f"column {j} holds numbers: a finite number within float32's range expected")
            else:
                out[i, j] = float(v)
    return out


# --------------------------------------------------------------------------- uploads
def rows_from_file(data: bytes, spec: ModelInput, field: str = "file") -> np.ndarray:
    """One uploaded file as a batch of one raw row. Decoders' own words never reach the caller:
    they may quote the file's bytes."""
    if spec.uploads is None:
        raise InputError(field, f'this model takes rows of {spec.kind} as JSON ({{"rows": [...]}}), not a file')
    if not data:
        raise InputError(field, "empty")
    try:
        if spec.kind == "image":
            return _image(data, spec, field)
        if spec.kind == "audio":
            return _audio(data, spec, field)
    except DataError as e:  # the decoders name the field they were given as the file
        raise InputError(field, str(e).removeprefix(f"{field}: ")) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(field, f"not UTF-8 text (byte {e.start})") from None
    if len(data) > MAX_TEXT_BYTES:
        raise InputError(field, f"over {MAX_TEXT_BYTES} bytes")
    return np.array([text.removeprefix("\ufeff").strip()], dtype=object)


UPLOAD_PIXELS = 4096 * 4096  # an uploaded image's width x height, checked from its header: a photo fits, a bomb does not
DECODES = threading.BoundedSemaphore(2)  # uploads decoded at once in this process: each may take a few hundred MB


def _image(data: bytes, spec: ModelInput, field: str) -> np.ndarray:
    channels = 3 if len(spec.raw_shape) == 3 and spec.raw_shape[0] == 3 else 1
    options = ImageOptions(size=spec.raw_shape[-2:], resize=spec.resize, channels=channels)
    with DECODES:
        pixels = decode_image_bytes(data, options, field, max_pixels=UPLOAD_PIXELS)
    return (pixels.astype(np.float32) / 255.0).reshape((1, *spec.raw_shape))


def _audio(data: bytes, spec: ModelInput, field: str) -> np.ndarray:
    (samples,) = spec.raw_shape
    wave = decode_audio_bytes(io.BytesIO(data), len(data), spec.sample_rate, samples / spec.sample_rate, field)
    return wave[:samples].reshape(1, samples)
