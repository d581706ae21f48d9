"""PCM WAV files: decoded to float32 samples, brought to one rate and one length, and the
``wav`` format: a folder of ``{label}_{speaker}_{index}.wav`` files (the speaker lets test hold
out whole voices)."""

from __future__ import annotations

import math
import os
import wave
from pathlib import Path
from typing import IO, Any

import numpy as np

from xsharp.fileguard import ANYWHERE, DataError, FileGuard

from .arrays import Arrays
from .source_files import why

MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384000  # Hz a source audio file may have


def read_wav(path: str | Path, guard: FileGuard = ANYWHERE) -> tuple[np.ndarray, int]:
    """A PCM WAV file as float32 samples in [-1, 1] (channels averaged) and its sample rate."""
    try:
        with guard.open(path) as f:
            return read_wav_file(f, os.fstat(f.fileno()).st_size, path)
    except DataError:
        raise
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable PCM WAV file ({why(e)})") from None


def read_wav_file(f: IO[bytes], size: int, path: str | Path) -> tuple[np.ndarray, int]:
    """``read_wav`` of an open file of ``size`` bytes (``path`` names it in errors): an upload
    is read as a file on disk is."""
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
        raise DataError(f"{path}: not a readable PCM WAV file ({why(e)})") from None
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


def resample(a: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``a`` at ``rate`` Hz linearly interpolated to ``target`` Hz."""
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
    a = resample(a[: math.ceil(duration * rate) + 1], rate, target)[:n]
    out[: len(a)] = a
    return out


def read_wav_folder(path: Path, sample_rate: int = 16000, duration: float = 1.0, guard: FileGuard = ANYWHERE, **_: Any) -> Arrays:
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
