"""Speech features on the array backend: framing, window, power spectrum, mel filterbank,
log-mel, MFCC, mean/variance normalisation and stacking of neighbouring frames.

Every function takes waveforms or features as NumPy or CuPy arrays and computes with the
same module (``xp = xp_of(x)``), so one code runs on CPU and GPU. Shapes: waveforms
``(n, samples)`` (or one ``(samples,)``), frames ``(n, T, frame_length)``, features
``(n, T, F)``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from xsharp.backend import xp_of


def frame_count(samples: int, frame_length: int, hop: int) -> int:
    """Frames of ``frame_length`` every ``hop`` samples that fit in ``samples`` (at least one)."""
    return 1 + max(0, (samples - frame_length) // hop)


def frames(x: Any, frame_length: int, hop: int) -> Any:
    """Overlapping frames: ``(..., samples) -> (..., T, frame_length)``; a waveform shorter than
    one frame is zero-padded to one frame."""
    xp = xp_of(x)
    if x.shape[-1] < frame_length:
        pad = [(0, 0)] * (x.ndim - 1) + [(0, frame_length - x.shape[-1])]
        x = xp.pad(x, pad)
    t = frame_count(x.shape[-1], frame_length, hop)
    index = hop * xp.arange(t)[:, None] + xp.arange(frame_length)[None, :]
    return x[..., index]


def window(kind: str, length: int, xp: Any) -> Any:
    """A periodic Hann or Hamming window (or ``rect``) of ``length`` samples."""
    n = xp.arange(length, dtype=xp.float32)
    if kind == "hann":
        return (0.5 - 0.5 * xp.cos(2 * math.pi * n / length)).astype(xp.float32)
    if kind == "hamming":
        return (0.54 - 0.46 * xp.cos(2 * math.pi * n / length)).astype(xp.float32)
    if kind == "rect":
        return xp.ones(length, dtype=xp.float32)
    raise ValueError(f"unknown window {kind!r}: use hann, hamming or rect")


def power_spectrum(framed: Any, n_fft: int, window_kind: str = "hann") -> Any:
    """|FFT|^2 / n_fft of windowed frames: ``(..., T, L) -> (..., T, n_fft // 2 + 1)``."""
    xp = xp_of(framed)
    w = window(window_kind, framed.shape[-1], xp)
    spectrum = xp.fft.rfft(framed * w, n=n_fft, axis=-1)
    return ((spectrum.real**2 + spectrum.imag**2) / n_fft).astype(xp.float32)


def hz_to_mel(f: Any) -> Any:
    return 2595.0 * xp_of(f).log10(1.0 + f / 700.0)


def mel_to_hz(m: Any) -> Any:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular filters evenly spaced on the mel scale (HTK formula): ``(n_mels, n_fft // 2 + 1)``.

    Each filter rises from the centre of its left neighbour to its own centre and falls to the
    centre of its right neighbour; peaks are 1. A constant, made once on the host in float64
    (read-only, float32) and copied to the device by its user: the same filters on either.
    """
    xp = np
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"mel filterbank needs 0 <= fmin < fmax <= sample_rate / 2, got fmin {fmin}, fmax {fmax}, rate {sample_rate}")
    mels = xp.linspace(float(hz_to_mel(xp.asarray(fmin))), float(hz_to_mel(xp.asarray(fmax))), n_mels + 2)
    edges = mel_to_hz(mels)
    bins = xp.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - left) / (centre - left)
    falling = (right - bins[None, :]) / (right - centre)
    return _constant(xp.clip(xp.minimum(rising, falling), 0.0, None))


def _constant(m: np.ndarray) -> np.ndarray:
    out = m.astype(np.float32)
    out.flags.writeable = False  # cached: shared by every caller
    return out


def log_mel(
    x: Any,
    sample_rate: int,
    n_mels: int = 40,
    frame_ms: float = 25.0,
    hop_ms: float = 10.0,
    n_fft: int | None = None,
    fmin: float = 20.0,
    fmax: float | None = None,
    pre_emphasis: float = 0.97,
    window_kind: str = "hann",
    floor: float = 1e-10,
) -> Any:
    """Log mel-band energies: ``(n, samples) -> (n, T, n_mels)``.

    Pre-emphasis ``y[t] = x[t] - a x[t-1]`` lifts the high frequencies speech loses; the FFT size
    defaults to the next power of two above the frame.
    """
    xp = xp_of(x)
    x = xp.asarray(x, dtype=xp.float32)
    if pre_emphasis:
        x = xp.concatenate([x[..., :1], x[..., 1:] - pre_emphasis * x[..., :-1]], axis=-1)
    length = max(1, int(round(sample_rate * frame_ms / 1000)))
    hop = max(1, int(round(sample_rate * hop_ms / 1000)))
    n_fft = n_fft or 1 << (length - 1).bit_length()
    power = power_spectrum(frames(x, length, hop), n_fft, window_kind)
    bank = xp.asarray(mel_filterbank(n_mels, n_fft, sample_rate, fmin, fmax))
    return xp.log(power @ bank.T + floor)


@functools.lru_cache(maxsize=16)
def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix ``(n_out, n_in)``: ``c_k = s_k sum_i x_i cos(pi k (2i + 1) / 2N)``
    (a host constant, as :func:`mel_filterbank`)."""
    k = np.arange(n_out, dtype=np.float64)[:, None]
    i = np.arange(n_in, dtype=np.float64)[None, :]
    m = np.cos(math.pi * k * (2 * i + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    m[0] /= math.sqrt(2.0)
    return _constant(m)


def mfcc(x: Any, sample_rate: int, n_mfcc: int = 13, n_mels: int = 40, **log_mel_options: Any) -> Any:
    """Mel-frequency cepstral coefficients: the DCT of the log-mel energies, first ``n_mfcc`` kept."""
    if n_mfcc > n_mels:
        raise ValueError(f"n_mfcc ({n_mfcc}) cannot exceed n_mels ({n_mels})")
    lm = log_mel(x, sample_rate, n_mels=n_mels, **log_mel_options)
    return lm @ xp_of(lm).asarray(dct_matrix(n_mels, n_mfcc)).T


def cmvn(features: Any, variance: bool = True, eps: float = 1e-5) -> Any:
    """Per-utterance mean (and variance) normalisation of each coefficient over time (axis -2)."""
    xp = xp_of(features)
    out = features - features.mean(axis=-2, keepdims=True)
    if variance:
        out = out / xp.sqrt(features.var(axis=-2, keepdims=True) + eps)
    return out


def stack_frames(features: Any, context: int = 2, stride: int = 1) -> Any:
    """Each frame with ``context`` neighbours on either side (edges repeat), every ``stride``-th
    frame kept: ``(n, T, F) -> (n, ceil(T / stride), (2 context + 1) F)``."""
    xp = xp_of(features)
    t = features.shape[-2]
    padded = xp.concatenate([features[..., :1, :]] * context + [features] + [features[..., -1:, :]] * context, axis=-2)
    centres = xp.arange(0, t, stride)
    index = centres[:, None] + xp.arange(2 * context + 1)[None, :]  # into padded: centre c sits at c + context
    stacked = padded[..., index, :]  # (n, T', 2c+1, F)
    return stacked.reshape(*stacked.shape[:-2], -1)
