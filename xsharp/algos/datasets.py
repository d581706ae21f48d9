"""Datasets by name (``dataset: digits``) or by path and format (``path: x.npz``).

Loaders return arrays; :func:`load` splits them into train / validation / test with a seeded,
stratified split, so every worker and every rerun sees the same rows.
Add a named dataset to ``NAMED`` and a file format to ``FORMATS``.

Every file a path names is opened through a :class:`~xsharp.fileguard.FileGuard`: anywhere for
`xsharp run`, under the server's data roots for a job of the service. An error names the file
and the problem, never what the file holds: a job's errors are shown to its user, and the file
may be one they could not read themselves.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import numpy as np

from xsharp.fileguard import ANYWHERE, DataError, FileGuard

MAX_CLASSES = 10_000  # distinct labels a data set may have: class names travel in every model
MAX_CLASS_NAME = 128  # characters of one class name
# Bytes of one line (and of one CSV record, however many lines it spans) of a text file. A row is
# one sample for tfidf / bow / word2vec: 1 MiB is some 150,000 words, far past any document a
# classifier reads, and small enough that a lying line (300 MiB of one line in a 300 KB .gz)
# is refused after reading 1 MiB of it, not held whole.
MAX_TEXT_BYTES = 1 << 20
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384000  # Hz a source audio file may have


def _why(e: BaseException) -> str:
    """Why a read failed, without the file's bytes (a decoder's message may quote them)."""
    return getattr(e, "strerror", None) or type(e).__name__


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str] = field(default_factory=list)
    test_speakers: list[str] = field(default_factory=list)  # speakers held out whole for test, if any
    pipeline: Any = None  # the fitted features.Pipeline that made x_* from the raw rows (None: raw)
    columns: list[str] = field(default_factory=list)  # tables: the name of each column of x
    first_missing: dict[str, int] = field(default_factory=dict)  # tables: column -> first data row (1-based) with no number
    skipped: int = 0  # files left out as unreadable (data.skip_bad)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    train = None  # in memory; a StreamedData (xsharp.data.stream) streams its training rows from shards

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name}: {len(self.y_train)} train, {len(self.y_val)} val, {len(self.y_test)} test, "
            f"shape {self.in_shape}, {self.n_classes} classes"
            + (f", {len(self.test_speakers)} speakers held out for test" if self.test_speakers else "")
            + (f", {self.skipped} unreadable files skipped" if self.skipped else "")
            + ")"
        )


@dataclass
class Arrays:
    """What a loader returns: all rows (x, y) or, when the source splits them, train and test."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    classes: list[str] | None = None
    speakers: np.ndarray | None = None  # one name per row of x (WAV folders): test can hold out whole speakers
    skipped: int = 0  # files left out as unreadable (skip_bad)
    columns: list[str] | None = None  # tables: the name of each column of x
    first_missing: dict[str, int] | None = None  # tables: column -> first data row (1-based) with no number


def _digits(**_: Any) -> Arrays:
    # scikit-learn's copy of the UCI digits, read straight from its file: importing
    # sklearn.datasets costs most of a second, which every trial runner and worker would pay.
    # XSHARP_DIGITS_CSV names that file elsewhere: a machine without scikit-learn (the GPU check).
    import importlib.util

    path = os.environ.get("XSHARP_DIGITS_CSV")
    if not path:
        spec = importlib.util.find_spec("sklearn")
        if spec is None or not spec.submodule_search_locations:
            raise DataError("dataset 'digits' comes with scikit-learn, which is not installed: pip install scikit-learn")
        path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",")
    x = (table[:, :-1].reshape(-1, 8, 8) / 16.0).astype(np.float32)  # 8x8 grey levels 0..16 -> [0, 1]
    return Arrays(x, table[:, -1].astype(np.int64), classes=[str(c) for c in range(10)])


# --------------------------------------------------------------------------- IDX (MNIST format)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class _Capped(io.RawIOBase):
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
def _open(path: Path, guard: FileGuard, field: str = "data.path", text: bool = False) -> Iterator[IO]:
    """A file opened through ``guard``, ``.gz`` / ``.bz2`` decompressed on the fly (at most
    ``guard.max_file_bytes`` decompressed bytes, when the guard has a cap); ``text``: UTF-8 text
    with newlines left to the csv module."""
    import bz2
    import gzip

    with guard.open(path, field) as raw:
        suffix = path.suffix.lower()
        f: IO = gzip.GzipFile(fileobj=raw, mode="rb") if suffix == ".gz" else bz2.BZ2File(raw, "rb") if suffix == ".bz2" else raw
        if f is not raw and guard.max_file_bytes is not None:
            f = io.BufferedReader(_Capped(f, guard.max_file_bytes, path), 1 << 16)
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


def read_idx(path: str | Path, guard: FileGuard = ANYWHERE, field: str = "data.path") -> np.ndarray:
    """Any IDX file (the MNIST format, optionally gzipped) as an array of its stored type.

    Header: two zero bytes, a type code, the number of dimensions, then each dimension as a
    big-endian int32; the data follow in C order.
    """
    path = Path(path)
    try:
        with _open(path, guard, field) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
                raise DataError(f"{path}: not an IDX file (its first 4 bytes are not an IDX header)")
            ndim = head[3]
            dims = struct.unpack(f">{ndim}i", f.read(4 * ndim))
            dtype = np.dtype(_IDX_TYPES[head[2]])
            need = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize  # before reading: the header may lie
            if min(dims, default=1) < 0 or (guard.max_file_bytes is not None and need > guard.max_file_bytes):
                raise DataError(f"{path}: header says {dims}, {need} bytes of data, over this server's cap of {guard.max_file_bytes} bytes a file")
            raw = f.read(need)
    except (OSError, EOFError, struct.error) as e:
        raise DataError(f"{path}: not a readable IDX file ({_why(e)})") from None
    if len(raw) < need:
        raise DataError(f"{path}: header says {dims} ({need} bytes of data) but the file holds {len(raw)}")
    return np.frombuffer(raw[:need], dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_images(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0  # grey levels 0..255 -> [0, 1]
    return images.astype(np.float32)


def _labels_file(images: Path) -> Path | None:
    """MNIST naming: ``train-images-idx3-ubyte[.gz]`` has ``train-labels-idx1-ubyte[.gz]`` beside it."""
    if "images-idx3" not in images.name:
        return None
    name = images.name.replace("images-idx3", "labels-idx1")
    for candidate in (images.with_name(name), images.with_name(name.removesuffix(".gz")), images.with_name(name + ".gz")):
        if candidate.exists():
            return candidate
    return None


def _idx_pair(images: Path, labels: Path | None, guard: FileGuard) -> tuple[np.ndarray, np.ndarray]:
    labels = labels or _labels_file(images)
    if labels is None:
        raise DataError(f"{images}: no labels file beside it (MNIST naming: *-labels-idx1-ubyte); set data.labels")
    x, y = read_idx(images, guard), read_idx(labels, guard, "data.labels")
    if y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise DataError(f"{images}: {x.shape[0]} samples but {labels.name} holds labels of shape {y.shape}")
    return _idx_images(x), y.astype(np.int64)


def _idx(path: Path, labels: str | None = None, guard: FileGuard = ANYWHERE, **_: Any) -> Arrays:
    """An IDX images file (labels beside it, or ``labels``), or a folder holding MNIST's four files
    (``train-*`` and ``t10k-*``/``test-*``: the folder's own train/test split)."""
    if path.is_dir():
        found = {}
        for part, prefixes in (("train", ("train",)), ("test", ("t10k", "test"))):
            for prefix in prefixes:
                hits = sorted(path.glob(f"{prefix}-images-idx3-ubyte*"))
                if hits:
                    found[part] = hits[0]
                    break
        if "train" not in found:
            raise DataError(f"{path}: no train-images-idx3-ubyte[.gz] in this folder")
        x, y = _idx_pair(found["train"], None, guard)
        if "test" not in found:
            return Arrays(x, y)
        x_test, y_test = _idx_pair(found["test"], None, guard)
        return Arrays(x, y, x_test, y_test)
    return Arrays(*_idx_pair(path, guard.check(labels, "data.labels") if labels else None, guard))


FASHION_MNIST_DIR = Path(os.environ.get("XSHARP_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist")  # another place: a machine without the package (the GPU check)
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _fashion_mnist(**_: Any) -> Arrays:
    """Zalando's Fashion-MNIST, 60,000 train and 10,000 test 28x28 images, from Debian's
    ``dataset-fashion-mnist`` (scripts/system-deps.sh installs it)."""
    if not FASHION_MNIST_DIR.is_dir():
        raise DataError(f"{FASHION_MNIST_DIR}: not here; install Debian's dataset-fashion-mnist (scripts/system-deps.sh)")
    arrays = _idx(FASHION_MNIST_DIR)
    arrays.classes = list(FASHION_MNIST_CLASSES)
    return arrays


# --------------------------------------------------------------------------- WAV folders
def read_wav(path: str | Path, guard: FileGuard = ANYWHERE) -> tuple[np.ndarray, int]:
    """A PCM WAV file as float32 samples in [-1, 1] (channels averaged) and its sample rate."""
    try:
        with guard.open(path) as f:
            return read_wav_file(f, os.fstat(f.fileno()).st_size, path)
    except DataError:
        raise
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable PCM WAV file ({_why(e)})") from None


def read_wav_file(f: IO[bytes], size: int, path: str | Path) -> tuple[np.ndarray, int]:
    """``read_wav`` of an open file of ``size`` bytes (``path`` names it in errors): an upload
    is read as a file on disk is."""
    import wave

    try:
        with wave.open(f, "rb") as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            claimed = w.getnframes() * width * channels
            if claimed > size:  # read before allocating: a lying header would size the read buffer
                raise DataError(f"{path}: its header says {claimed} bytes of samples, but the file holds {size} bytes in all")
            if channels < 1:
                raise DataError(f"{path}: no channels")
            raw = w.readframes(w.getnframes())
            raw = raw[: len(raw) // (width * channels) * (width * channels)]  # a file cut mid-frame: its whole frames
    except wave.Error:  # its words quote header bytes ("unknown format: 3")
        raise DataError(f"{path}: not a readable PCM WAV file (not RIFF/WAVE, or not PCM)") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable PCM WAV file ({_why(e)})") from None
    if width == 1:
        a = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width in (2, 4):
        a = np.frombuffer(raw, f"<i{width}").astype(np.float32) / float(2 ** (8 * width - 1))
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        a = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float32) / 2.0**23
    else:
        raise DataError(f"{path}: unsupported sample width {width} bytes")
    return a.reshape(-1, channels).mean(axis=1), rate


def parse_wav_name(name: str) -> tuple[str, str, str] | None:
    """``{label}_{speaker}_{index}.wav`` -> (label, speaker, index); speakers may hold ``_``."""
    stem = name[: -len(".wav")] if name.lower().endswith(".wav") else None
    if stem is None:
        return None
    parts = stem.split("_")
    if len(parts) < 3 or not all(parts):
        return None
    return parts[0], "_".join(parts[1:-1]), parts[-1]


def _resample(a: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return a
    n = int(round(len(a) * target / rate))
    return np.interp(np.arange(n) * (rate / target), np.arange(len(a)), a).astype(np.float32)


def fit_audio(a: np.ndarray, rate: int, target: int, duration: float, path: str | Path) -> np.ndarray:
    """Samples ``a`` at ``rate`` Hz as exactly ``round(target * duration)`` float32 samples at
    ``target`` Hz, cut or zero-padded. The source is cut to the frames ``duration`` needs before
    resampling, so a long file (or a tiny one whose header says 1 Hz) costs no more than one row."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise DataError(f"{path}: a sample rate of {rate} Hz (readable: {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)")
    n = int(round(target * duration))
    out = np.zeros(n, dtype=np.float32)
    a = _resample(a[: math.ceil(duration * rate) + 1], rate, target)[:n]
    out[: len(a)] = a
    return out


def _wav_folder(path: Path, sample_rate: int = 16000, duration: float = 1.0, guard: FileGuard = ANYWHERE, **_: Any) -> Arrays:
    """Every ``{label}_{speaker}_{index}.wav`` in a folder, resampled to ``sample_rate`` and cut
    or zero-padded to ``duration`` seconds, so every row has the same length."""
    if not path.is_dir():
        raise DataError(f"{path}: the wav format reads a folder of {{label}}_{{speaker}}_{{index}}.wav files")
    files = [f for f in guard.files(path) if f.suffix.lower() == ".wav"]
    named = [(f, parse_wav_name(f.name)) for f in files]
    bad = [f.name for f, parts in named if parts is None]
    if bad:
        raise DataError(f"{path}: {len(bad)} file(s) not named {{label}}_{{speaker}}_{{index}}.wav, e.g. {bad[0]!r}")
    if not named:
        raise DataError(f"{path}: no .wav files here")
    n = int(round(sample_rate * duration))
    x = np.zeros((len(named), n), np.float32)
    labels, speakers = [], []
    for i, (f, (label, speaker, _)) in enumerate(named):
        a, rate = read_wav(f, guard)
        x[i] = fit_audio(a, rate, sample_rate, duration, f)
        labels.append(label)
        speakers.append(speaker)
    y = np.array(labels)
    if all(v.isdigit() for v in labels):
        y = y.astype(np.int64)
    return Arrays(x, y, speakers=np.array(speakers))


# --------------------------------------------------------------------------- CSV with text
def _csv(path: Path, label_column: str = "label", text_column: str = "text", guard: FileGuard = ANYWHERE, **_: Any) -> Arrays:
    """A CSV file (``.csv``, ``.csv.gz``, ``.csv.bz2``) with a header: one label column and one
    text column; rows are strings, turned into numbers by the spec's ``features``."""
    import csv

    csv.field_size_limit(MAX_TEXT_BYTES)
    line = 0
    try:
        with _open(path, guard) as f:
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
        raise DataError(f"{path}: not a readable CSV file (after line {line}: {_why(e)})") from None
    except csv.Error:  # its words may quote the file
        raise DataError(f"{path}: not a readable CSV file (line {lines.number}: a quote or a field over {MAX_TEXT_BYTES} bytes the csv rules refuse)") from None
    if not texts:
        raise DataError(f"{path}: no rows")
    return Arrays(np.array(texts, dtype=object), np.array(labels))


ROTTEN_TOMATOES = Path(__file__).with_name("data") / "rotten_tomatoes.csv.bz2"


def _rotten_tomatoes(**_: Any) -> Arrays:
    """13,905 Rotten Tomatoes snippets labelled fresh, rotten or plot (text), shipped with xsharp
    (xsharp/algos/data/README.md: source and licence). Its rows are strings: the spec's
    ``features`` (tfidf, bow, word2vec) turn them into numbers."""
    return _csv(ROTTEN_TOMATOES, label_column="category", text_column="text")


NAMED: dict[str, Callable[..., Arrays]] = {"digits": _digits, "fashion-mnist": _fashion_mnist, "rotten-tomatoes": _rotten_tomatoes}


_NPZ_ARRAYS = ("x", "y", "x_train", "y_train", "x_test", "y_test", "classes")


def _npz_sizes(zipped: Any, path: Path) -> dict[str, int]:
    """{array name: bytes once read} of each ``.npy`` member of an open ``ZipFile``, from its
    header alone: nothing is decompressed past it. Arrays of Python objects are refused."""
    sizes = {}
    for name in zipped.namelist():
        if not name.endswith(".npy"):
            continue
        with zipped.open(name) as member:
            version = np.lib.format.read_magic(member)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise DataError(f"{path}: array {name[:-4]!r} is in .npy format version {version}, which is not read")
            shape, _, dtype = read_header(member)
        if dtype.hasobject:
            raise DataError(f"{path}: array {name[:-4]!r} holds Python objects (pickles), which are never read; save numbers or strings")
        sizes[name[:-4]] = math.prod(shape) * dtype.itemsize
    return sizes


def _npz(path: Path, guard: FileGuard = ANYWHERE, **_: Any) -> Arrays:
    import zipfile

    try:
        with guard.open(path) as raw:
            with zipfile.ZipFile(raw) as zipped:  # headers first: 500 KB of .npz may hold GBs of zeros
                sizes = _npz_sizes(zipped, path)
            wanted = [k for k in _NPZ_ARRAYS if k in sizes]
            total = sum(sizes[k] for k in wanted)
            if guard.max_file_bytes is not None and total > guard.max_file_bytes:
                raise DataError(f"{path}: its arrays come to {total} bytes once decompressed, over this server's cap of {guard.max_file_bytes} bytes a file")
            raw.seek(0)
            with np.load(raw, allow_pickle=False) as f:
                data = {k: f[k] for k in wanted}
            others = len(sizes) - len(wanted)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: not a readable .npz file ({_why(e)})") from None
    classes = [str(c) for c in data["classes"]] if "classes" in data else None
    if "x_train" in data:
        missing = [k for k in ("y_train", "x_test", "y_test") if k not in data]
        if missing:
            raise DataError(f"{path}: has x_train but lacks {', '.join(missing)}")
        return Arrays(data["x_train"], data["y_train"], data["x_test"], data["y_test"], classes)
    if "x" in data and "y" in data:
        return Arrays(data["x"], data["y"], classes=classes)
    raise DataError(f"{path}: expected arrays x and y (or x_train, y_train, x_test, y_test); found {others + len(data)} other array(s)")


def _images(path: Path, **options: Any) -> Arrays:
    from xsharp.data.images import read_image_folder

    return read_image_folder(path, **options)


def _audio(path: Path, **options: Any) -> Arrays:
    from xsharp.data.audio_folder import read_audio_folder

    return read_audio_folder(path, **options)


def _table(path: Path, **options: Any) -> Arrays:
    from xsharp.data.tables import read_table

    return read_table(path, **options)


def _text(path: Path, **options: Any) -> Arrays:
    from xsharp.data.text import read_text

    return read_text(path, **options)


# images, audio, table, text: users' own data, read by xsharp.data's readers
FORMATS: dict[str, Callable[..., Arrays]] = {
    "npz": _npz, "idx": _idx, "wav": _wav_folder, "csv": _csv, "images": _images, "audio": _audio, "table": _table, "text": _text,
}
_SUFFIX_FORMATS = {"npz": "npz", "idx": "idx", "wav": "wav", "csv": "csv", "parquet": "table", "pq": "table", "jsonl": "text", "ndjson": "text"}


def _class_folders_hold(folder: Path, guard: FileGuard) -> str | None:
    """``images`` or ``audio`` when the class folders under ``folder`` (or under its ``train/``)
    hold image or audio files: the first file of a known suffix decides. Only folders the guard
    lets a job read are looked into: what lies behind a symlink out of the data roots must not
    show in the answer."""
    from xsharp.data.audio_folder import AUDIO_SUFFIXES
    from xsharp.data.images import IMAGE_SUFFIXES

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


def _class_names(values, where: str) -> list[str]:
    """Class names are shown to the job's user and saved in its model: bounded in count (before a
    string is made of each) and in length."""
    if len(values) > MAX_CLASSES:
        raise DataError(f"{where}: {len(values)} distinct labels, over the cap of {MAX_CLASSES} classes (is data.label_column the right column?)")
    classes = [str(v) for v in values]
    longest = max((len(c) for c in classes), default=0)
    if longest > MAX_CLASS_NAME:
        raise DataError(f"{where}: a label of {longest} characters, over the cap of {MAX_CLASS_NAME} (is data.label_column the right column?)")
    return classes


def _labels(y: np.ndarray, classes: list[str] | None, where: str) -> tuple[np.ndarray, list[str]]:
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be one-dimensional, got shape {y.shape}")
    if classes is None:
        values = np.unique(y)
        if np.issubdtype(y.dtype, np.integer) and values.size and values.min() >= 0 and values.max() < MAX_CLASSES:
            classes = [str(i) for i in range(int(values.max()) + 1)]
            return y.astype(np.int64), classes
        return np.searchsorted(values, y).astype(np.int64), _class_names(values, where)
    classes = _class_names(classes, where)
    if not np.issubdtype(y.dtype, np.integer):  # names: map them onto the given classes
        index = {c: i for i, c in enumerate(classes)}
        unknown = {str(v) for v in y.tolist()} - set(index)
        if unknown:
            raise DataError(f"{where}: {len(unknown)} label value(s) are not among the {len(classes)} classes the data lists")
        return np.array([index[str(v)] for v in y.tolist()], dtype=np.int64), classes
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise DataError(f"{where}: labels must lie in 0..{len(classes) - 1}")
    return y.astype(np.int64), classes


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of ``draws`` rows each class gets: its share rounded down, the rest handed out
    by largest remainder, ties broken at random (scikit-learn's rule, so splits match it)."""
    continuous = counts / counts.sum() * draws
    floored = np.floor(continuous)
    need = int(draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add = min(len(inds), need)
            floored[rng.choice(inds, size=add, replace=False)] += 1
            need -= add
            if need == 0:
                break
    return floored.astype(int)


def _split(x, y, fraction: float, seed: int):
    """Hold out ``fraction`` of the rows (rounded up), stratified by class when every class has
    two rows or more. The rows are those ``sklearn.model_selection.train_test_split(x, y,
    test_size=fraction, random_state=seed, stratify=...)`` picks (tests check it); done here
    because importing scikit-learn costs most of a second in every worker."""
    if fraction <= 0:
        return x, y, x[:0], y[:0]
    n = len(y)
    n_test = int(np.ceil(fraction * n))
    if fraction >= 1 or n_test >= n:
        raise DataError(f"cannot hold out {fraction:g} of {n} rows: none would be left to train on")
    n_train = n - n_test
    rng = np.random.RandomState(seed)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        order = rng.permutation(n)
        test, train = order[:n_test], order[n_test:]
    else:
        if min(n_train, n_test) < len(classes):
            raise DataError(f"cannot hold out {fraction:g} of {n} rows: {n_test} held-out and {n_train} other rows "
                            f"cannot each hold all {len(classes)} classes")
        by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
        n_i = _approximate_mode(counts, n_train, rng)
        t_i = _approximate_mode(counts - n_i, n_test, rng)
        train_rows: list = []
        test_rows: list = []
        for i, rows in enumerate(by_class):
            shuffled = rows.take(rng.permutation(counts[i]), mode="clip")
            train_rows.extend(shuffled[: n_i[i]])
            test_rows.extend(shuffled[n_i[i] : n_i[i] + t_i[i]])
        train, test = rng.permutation(train_rows), rng.permutation(test_rows)
    return x[train], y[train], x[test], y[test]


def _as_rows(x: Any) -> np.ndarray:
    """Numbers become float32; strings (text rows) stay strings, for the spec's features to turn into numbers."""
    x = np.asarray(x)
    if x.dtype.kind in "OUS":
        return x.astype(object)
    return x.astype(np.float32, copy=False)


def held_out_speakers(speakers: np.ndarray, test_speakers: list[str] | float, seed: int) -> list[str]:
    """The speakers whose every row goes to test: the names (or shell patterns) given, or a
    seeded share of them."""
    names = sorted({str(s) for s in speakers})
    if isinstance(test_speakers, (int, float)) and not isinstance(test_speakers, bool):
        if not 0 < test_speakers < 1:
            raise DataError(f"test_speakers: a share of speakers must lie in (0, 1), got {test_speakers}")
        if len(names) < 2:
            raise DataError(f"test_speakers: need at least 2 speakers to hold some out, found {len(names)}")
        k = min(max(1, int(round(test_speakers * len(names)))), len(names) - 1)
        picked = np.random.default_rng(seed).permutation(len(names))[:k]
        return sorted(names[i] for i in picked)
    held, unmatched = set(), []
    for pattern in map(str, test_speakers):  # a name, or a shell pattern: "*.m3" holds out voice m3 in every accent
        hits = fnmatch.filter(names, pattern)
        held.update(hits)
        if not hits:
            unmatched.append(pattern)
    if unmatched:
        raise DataError(f"test_speakers: {unmatched[:5]} match none of the data's speakers {names[:20]}")
    if held >= set(names):
        raise DataError("test_speakers: holding out every speaker leaves nothing to train on")
    return sorted(held)


def load(
    dataset: str | None = None,
    path: str | Path | None = None,
    format: str | None = None,
    *,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    limit: int | None = None,
    seed: int = 0,
    test_speakers: list[str] | float | None = None,
    guard: FileGuard = ANYWHERE,
    **options: Any,
) -> Dataset:
    """Load a dataset by name or by path and split it reproducibly.

    ``test_fraction`` applies only when the source has no test split of its own;
    ``test_speakers`` (names, or a share of the speakers) holds out whole speakers for test
    instead; ``validation_fraction`` is taken from the training rows; ``limit`` keeps the first
    rows of a seeded shuffle (handy for quick runs). ``options`` go to the format's reader
    (``labels``, ``sample_rate``, ``duration``, ``label_column``, ``text_column``, ``size``,
    ``resize``, ``channels``, ``feature_columns``, ``skip_bad``). ``guard``
    decides which files a path may reach (a job of the service: its data roots).
    """
    if (dataset is None) == (path is None):
        raise DataError("give exactly one of dataset (a name) or path (a file)")
    options = {k: v for k, v in options.items() if v is not None}
    if dataset is not None:
        if dataset not in NAMED:
            raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(NAMED))}")
        arrays, name = NAMED[dataset](**options), dataset
    else:
        p = guard.as_given(path, "data.path")
        fmt = format or format_of(p, guard)
        if fmt not in FORMATS:
            raise DataError(f"{path}: cannot tell the format; set data.format to one of {', '.join(sorted(FORMATS))}")
        arrays, name = FORMATS[fmt](p, guard=guard, **options), p.name

    y, classes = _labels(arrays.y, arrays.classes, name)
    x = _as_rows(arrays.x)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{name}: {x.shape[0]} samples but {y.shape[0]} labels")
    order = np.random.default_rng(seed).permutation(len(y))
    if limit is not None:
        order = order[:limit]
    x, y = x[order], y[order]
    held: list[str] = []
    if test_speakers is not None:
        if arrays.speakers is None:
            raise DataError(f"{name}: test_speakers needs rows with speakers (a folder of {{label}}_{{speaker}}_{{index}}.wav files)")
        if arrays.x_test is not None:
            raise DataError(f"{name}: the data has its own test split; test_speakers cannot apply")
        speakers = np.asarray(arrays.speakers).astype(str)[order]
        held = held_out_speakers(speakers, test_speakers, seed)
        out = np.isin(speakers, held)
        x_test, y_test, x, y = x[out], y[out], x[~out], y[~out]
    elif arrays.x_test is not None:
        x_test = _as_rows(arrays.x_test)
        y_test, _ = _labels(arrays.y_test, classes, name)
    else:
        x, y, x_test, y_test = _split(x, y, test_fraction, seed)
    x_train, y_train, x_val, y_val = _split(x, y, validation_fraction, seed + 1)
    return Dataset(name, x_train, y_train, x_val, y_val, x_test, y_test, classes, held,
                   columns=list(arrays.columns or []), first_missing=dict(arrays.first_missing or {}), skipped=arrays.skipped)
