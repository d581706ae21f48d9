"""Audio features against their definitions, and the espeak-ng spoken-digit script."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT
from xsharp.algos import audio

RATE = 8000


def tone(freq, seconds=0.5, rate=RATE):
    return np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate).astype(np.float32)


def test_frames_overlap_and_pad_short_signals():
    x = np.arange(10, dtype=np.float32)[None]
    f = audio.frames(x, 4, 3)
    assert f.shape == (1, 3, 4)
    np.testing.assert_array_equal(f[0, 1], [3, 4, 5, 6])
    assert audio.frames(np.ones((2, 3), np.float32), 5, 2).shape == (2, 1, 5)


def test_power_spectrum_of_a_tone_peaks_at_its_bin():
    framed = audio.frames(tone(1000)[None], 256, 128)
    power = audio.power_spectrum(framed, 256)
    assert power.shape == (1, framed.shape[1], 129)
    assert np.all(power[0].argmax(axis=1) == 32)  # 1000 Hz / (8000 Hz / 256)
    np.testing.assert_allclose(audio.window("hann", 4, np), [0, 0.5, 1, 0.5], atol=1e-6)


def test_mel_filterbank_triangles_cover_the_band():
    bank = audio.mel_filterbank(10, 512, RATE, 0, 4000)
    assert bank.shape == (10, 257) and bank.min() >= 0
    assert np.all(bank.max(axis=1) > 0.9)  # every triangle peaks near 1
    centres = bank.argmax(axis=1)
    assert np.all(np.diff(centres) > 0) and np.all(np.diff(np.diff(centres)) >= -1)  # wider apart as frequency rises
    np.testing.assert_allclose(audio.mel_to_hz(audio.hz_to_mel(np.array([100.0, 1000.0]))), [100, 1000], rtol=1e-6)
    with pytest.raises(ValueError, match="fmin < fmax"):
        audio.mel_filterbank(10, 512, RATE, 0, 5000)


def test_log_mel_finds_the_tone_and_mfcc_is_its_dct():
    x = np.stack([tone(500), tone(2500)])
    lm = audio.log_mel(x, RATE, n_mels=20, fmin=0)
    assert lm.shape == (2, 48, 20)  # 25 ms frames every 10 ms over 0.5 s
    low, high = lm[0].mean(axis=0).argmax(), lm[1].mean(axis=0).argmax()
    assert low < high
    dct = audio.dct_matrix(20, 20)
    np.testing.assert_allclose(dct @ dct.T, np.eye(20), atol=1e-5)  # orthonormal DCT-II
    from scipy.fft import dct as scipy_dct

    np.testing.assert_allclose(audio.mfcc(x, RATE, n_mfcc=13, n_mels=20, fmin=0), scipy_dct(lm, type=2, norm="ortho", axis=-1)[..., :13], rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="cannot exceed"):
        audio.mfcc(x, RATE, n_mfcc=30, n_mels=20)


def test_cmvn_and_stacked_frames():
    rng = np.random.default_rng(0)
    f = rng.normal(3, 2, (2, 50, 4)).astype(np.float32)
    z = audio.cmvn(f)
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=1), 1, atol=1e-3)
    f = np.arange(5, dtype=np.float32).reshape(1, 5, 1)
    s = audio.stack_frames(f, context=1, stride=2)
    np.testing.assert_array_equal(s[0], [[0, 0, 1], [1, 2, 3], [3, 4, 4]])  # edges repeat
    assert audio.stack_frames(np.zeros((3, 10, 4)), 2, 1).shape == (3, 10, 20)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_synth_script_is_reproducible_and_writes_the_layout(tmp_path):
    from xsharp.algos import datasets

    args = ["--accents", "en-us", "--voices", "m1", "f2", "--takes", "1", "--seed", "4"]
    for out in ("a", "b"):
        subprocess.run([sys.executable, str(ROOT / "scripts" / "synth_spoken_digits.py"), str(tmp_path / out), *args], check=True, capture_output=True)
    files = sorted(p.name for p in (tmp_path / "a").glob("*.wav"))
    assert len(files) == 20 and files[0] == "0_en-us.f2_0.wav"
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    d = datasets.load(path=tmp_path / "a", test_speakers=["*.f2"], validation_fraction=0)
    assert d.test_speakers == ["en-us.f2"] and len(d.y_test) == 10 and sorted(d.y_test) == list(range(10))
    assert "en-us.f2\t10\ttrain" in (tmp_path / "a" / "speakers.txt").read_text()
