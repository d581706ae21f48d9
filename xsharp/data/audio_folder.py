"""Audio class folders: ``ROOT/CLASS/*.{wav,flac}``, one folder per class, split by the folder
itself as ``ROOT/train/CLASS/...`` beside ``test/`` and/or ``val/`` (see
:mod:`xsharp.data.folders`). The flat ``{label}_{speaker}_{index}.wav`` naming stays the ``wav``
format of :mod:`xsharp.data.wav`.

Every file becomes float32 samples in [-1, 1], channels averaged, resampled to one rate and cut
or zero-padded to one duration, so every row has the same length.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from xsharp.fileguard import ANYWHERE, DataError, FileGuard

from .arrays import Arrays
from .folders import FolderListing, check_row_bytes, decode_files, list_class_folders, split_arrays
from .source_files import why
from .wav import fit_audio, read_wav, read_wav_file

AUDIO_SUFFIXES = frozenset({".wav", ".flac"})
DEFAULT_RATE = 16000
DEFAULT_DURATION = 1.0


def _read_flac(path: Path, seconds: float, guard: FileGuard) -> tuple[np.ndarray, int]:
    """The first ``seconds`` of a FLAC file (channels averaged) and its sample rate."""
    import soundfile

    try:
        with guard.open(path) as f, soundfile.SoundFile(f) as sound:
            rate = sound.samplerate
            a = sound.read(frames=math.ceil(seconds * rate) + 1, dtype="float32", always_2d=True)
    except DataError:
        raise
    except Exception as e:  # libsndfile's words may quote the header
        raise DataError(f"{path}: not a readable FLAC file ({why(e)})") from None
    return a.mean(axis=1), rate


def decode_audio(path: str | Path, sample_rate: int = DEFAULT_RATE, duration: float = DEFAULT_DURATION, guard: FileGuard = ANYWHERE) -> np.ndarray:
    """One WAV or FLAC file as ``round(sample_rate * duration)`` float32 samples. A source rate
    outside 1000..384000 Hz is refused; only the frames ``duration`` needs are resampled."""
    path = Path(path)
    if path.suffix.lower() == ".flac":
        a, rate = _read_flac(path, duration, guard)
    else:
        a, rate = read_wav(path, guard)
    return fit_audio(a, rate, sample_rate, duration, path)  # cut to duration first, then resampled


def decode_audio_bytes(f: Any, size: int, sample_rate: int, duration: float, path: str) -> np.ndarray:
    """``decode_audio`` of an open file of ``size`` bytes that is not on disk (an upload): FLAC by
    its magic bytes, else WAV; ``path`` names it in errors."""
    head = f.read(4)
    f.seek(0)
    if head == b"fLaC":
        import soundfile

        try:
            with soundfile.SoundFile(f) as sound:
                rate = sound.samplerate
                a = sound.read(frames=math.ceil(duration * rate) + 1, dtype="float32", always_2d=True).mean(axis=1)
        except Exception as e:  # libsndfile's words may quote the header
            raise DataError(f"{path}: not a readable FLAC file ({why(e)})") from None
    else:
        a, rate = read_wav_file(f, size, path)
    return fit_audio(a, rate, sample_rate, duration, path)


def list_audio_folder(root: str | Path, guard: FileGuard = ANYWHERE) -> FolderListing:
    """Every WAV and FLAC file of every class folder under ``root``, sorted; the folder's own split if it has one."""
    return list_class_folders(root, AUDIO_SUFFIXES, "audio", guard)


def read_audio_folder(
    path: str | Path,
    sample_rate: int | None = None,
    duration: float | None = None,
    guard: FileGuard = ANYWHERE,
    skip_bad: bool = False,
    **_: Any,
) -> Arrays:
    """An audio class folder as float32 rows ``(n, sample_rate * duration)`` (the ``audio`` format
    of ``datasets.load``; defaults 16000 Hz and 1 s). A ``test/`` folder becomes the test rows;
    ``val/`` rows join the training rows. ``skip_bad``: leave out (and count) unreadable files."""
    rate, seconds = sample_rate or DEFAULT_RATE, duration or DEFAULT_DURATION
    check_row_bytes("audio", sample_rate=rate, duration=seconds)
    listing = list_audio_folder(path, guard)
    decoded = decode_files(listing.files, lambda f: decode_audio(f, rate, seconds, guard), str(path), skip_bad=skip_bad)
    return split_arrays(decoded, listing)
