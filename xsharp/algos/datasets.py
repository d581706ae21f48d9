"""Datasets by name (``dataset: digits``) or by path and format (``path: x.npz``): the import
path the trainers, the CLI and the tests use. The code lives in the data tier:

- :mod:`xsharp.data.dataset`: the :class:`Dataset` type and :func:`load`, which splits a
  reader's arrays into train / validation / test reproducibly (:mod:`xsharp.data.splits`);
- :mod:`xsharp.data.named`: the bundled sets (``NAMED``);
- :mod:`xsharp.data.formats`: the file formats (``FORMATS``) and :func:`format_of`, each format a
  reader of :mod:`xsharp.data` (``npz``, ``idx``, ``wav``, ``csv_text``, ``images``, ``audio_folder``,
  ``tables``, ``text``) returning :class:`Arrays`;
- :mod:`xsharp.data.source_files`: files opened through a guard, decompressed within its cap,
  text read a bounded line at a time.
"""

from __future__ import annotations

from xsharp.data.arrays import MAX_CLASS_NAME, MAX_CLASSES, Arrays
from xsharp.data.arrays import class_names as _class_names
from xsharp.data.csv_text import read_csv_text as _csv
from xsharp.data.dataset import Dataset, load
from xsharp.data.formats import FORMATS, format_of
from xsharp.data.idx import read_idx
from xsharp.data.idx import read_idx_arrays as _idx
from xsharp.data.named import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, NAMED, ROTTEN_TOMATOES, _digits
from xsharp.data.npz import read_npz_arrays as _npz
from xsharp.data.source_files import MAX_TEXT_BYTES, TextLines
from xsharp.data.source_files import open_source as _open
from xsharp.data.source_files import why as _why
from xsharp.data.splits import held_out_speakers
from xsharp.data.splits import split_rows as _split
from xsharp.data.wav import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, fit_audio, parse_wav_name, read_wav, read_wav_file
from xsharp.data.wav import read_wav_folder as _wav_folder
from xsharp.data.wav import resample as _resample
from xsharp.fileguard import ANYWHERE, DataError, FileGuard

__all__ = [
    "ANYWHERE",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FORMATS",
    "MAX_CLASSES",
    "MAX_CLASS_NAME",
    "MAX_SAMPLE_RATE",
    "MAX_TEXT_BYTES",
    "MIN_SAMPLE_RATE",
    "NAMED",
    "ROTTEN_TOMATOES",
    "Arrays",
    "DataError",
    "Dataset",
    "FileGuard",
    "TextLines",
    "fit_audio",
    "format_of",
    "held_out_speakers",
    "load",
    "parse_wav_name",
    "read_idx",
    "read_wav",
    "read_wav_file",
    "_class_names",
    "_csv",
    "_digits",
    "_idx",
    "_npz",
    "_open",
    "_resample",
    "_split",
    "_wav_folder",
    "_why",
]
