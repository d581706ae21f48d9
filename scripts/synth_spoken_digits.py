#!/usr/bin/env python3
"""Synthesise a spoken-digit data set with espeak-ng, reproducibly.

Each speaker is an (accent, voice variant) pair of espeak-ng, e.g. ``en-us.m3``; each says the
ten digits ``--takes`` times at a speed and pitch drawn from a seeded generator. Identical
recordings (some accent/variant pairs sound the same) are dropped by content hash; silence
is trimmed, the audio resampled, and white noise added at a seeded random SNR. Files follow
the common spoken-digit layout ``{label}_{speaker}_{index}.wav`` that xsharp's ``wav`` format
reads; ``speakers.txt`` lists the speakers and which voices the recipes hold out for test.

espeak-ng is deterministic (same command, same bytes), so the same arguments give the same
files on any machine with the same espeak-ng:

    python scripts/synth_spoken_digits.py data/spoken-digits          # ~4,000 files, ~1 min
    python scripts/synth_spoken_digits.py /tmp/sd --takes 1 --accents en-us --voices m1 f1

Whole voices are held out by the recipes, e.g. ``test_speakers: ["*.m3", "*.f4", "*.john"]``:
those voice variants are never heard in training, in any accent.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ACCENTS = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
VOICES = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "croak", "adam", "linda", "john", "steph"]
TEST_VOICES = ["m3", "f4", "john"]  # held out whole by the recipes (every accent)


def synthesise(word: str, accent: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """espeak-ng's WAV for one word, as float32 samples and the sample rate."""
    cmd = ["espeak-ng", "-v", f"{accent}+{voice}", "-s", str(speed), "-p", str(pitch), "--stdout", word]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(raw), "rb") as w:
        rate = w.getframerate()
        a = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0
    return a, rate


def trim(a: np.ndarray, rate: int, threshold: float = 0.02, margin_ms: float = 30.0) -> np.ndarray:
    """Cut leading and trailing silence (samples below ``threshold`` of the peak), keeping a margin."""
    loud = np.flatnonzero(np.abs(a) >= threshold * max(float(np.abs(a).max()), 1e-9))
    if loud.size == 0:
        return a
    margin = int(rate * margin_ms / 1000)
    return a[max(0, loud[0] - margin) : loud[-1] + margin]


def resample(a: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return a
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(a, target // g, rate // g).astype(np.float32)


def add_noise(a: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    """White noise at ``snr_db`` below the signal's power, and a random gain; clipped to [-1, 1]."""
    power = float(np.mean(a**2)) or 1e-9
    noisy = a + rng.standard_normal(a.shape).astype(np.float32) * np.sqrt(power / 10 ** (snr_db / 10))
    gain = 0.5 / max(float(np.abs(noisy).max()), 1e-9) * rng.uniform(0.6, 1.6)
    return np.clip(noisy * gain, -1.0, 1.0)


def write_wav(path: Path, a: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((a * 32767).astype("<i2").tobytes())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="output folder (created; existing .wav files in it are replaced)")
    p.add_argument("--accents", nargs="+", default=ACCENTS, help="espeak-ng English voices (accents)")
    p.add_argument("--voices", nargs="+", default=VOICES, help="espeak-ng voice variants (see espeak-ng --voices=variant)")
    p.add_argument("--takes", type=int, default=3, help="recordings of each digit per speaker, at different speeds and pitches")
    p.add_argument("--speed", type=int, nargs=2, default=(110, 230), metavar=("LO", "HI"), help="words per minute range")
    p.add_argument("--pitch", type=int, nargs=2, default=(20, 80), metavar=("LO", "HI"), help="espeak-ng pitch range (0-99)")
    p.add_argument("--snr-db", type=float, nargs=2, default=(10.0, 30.0), metavar=("LO", "HI"), help="noise level range")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="espeak-ng processes at once")
    args = p.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed (apt-get install espeak-ng, or scripts/system-deps.sh)", file=sys.stderr)
        return 2

    # Every recording's settings come from one seeded generator, drawn in a fixed order.
    rng = np.random.default_rng(args.seed)
    plan = []
    for accent in args.accents:
        for voice in args.voices:
            for label, word in enumerate(DIGITS):
                for take in range(args.takes):
                    speed = int(rng.integers(args.speed[0], args.speed[1] + 1))
                    pitch = int(rng.integers(args.pitch[0], args.pitch[1] + 1))
                    snr = float(rng.uniform(*args.snr_db))
                    noise_seed = int(rng.integers(2**31))
                    plan.append((accent, voice, label, word, take, speed, pitch, snr, noise_seed))

    with ThreadPoolExecutor(args.jobs) as pool:
        audio = list(pool.map(lambda job: synthesise(job[3], job[0], job[1], job[5], job[6]), plan))

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ".gitignore").write_text("# generated by scripts/synth_spoken_digits.py; never committed\n*\n")
    for old in args.out.glob("*.wav"):
        old.unlink()
    seen: set[str] = set()
    speakers: dict[str, int] = {}
    duplicates = 0
    for (accent, voice, label, _word, take, _speed, _pitch, snr, noise_seed), (a, rate) in zip(plan, audio):
        digest = hashlib.sha256(a.tobytes()).hexdigest()
        if digest in seen:  # this accent/variant/speed/pitch sounds exactly like an earlier one
            duplicates += 1
            continue
        seen.add(digest)
        clean = resample(trim(a, rate), rate, args.sample_rate)
        noisy = add_noise(clean, np.random.default_rng(noise_seed), snr)
        speaker = f"{accent}.{voice}"
        write_wav(args.out / f"{label}_{speaker}_{take}.wav", noisy, args.sample_rate)
        speakers[speaker] = speakers.get(speaker, 0) + 1

    held = sorted(s for s in speakers if s.rsplit(".", 1)[1] in TEST_VOICES)
    lines = [f"{s}\t{n}\t{'test' if s in held else 'train'}" for s, n in sorted(speakers.items())]
    (args.out / "speakers.txt").write_text(
        "# speaker\tfiles\tsplit in the recipes (whole voices held out: " + ", ".join(TEST_VOICES) + ")\n" + "\n".join(lines) + "\n"
    )
    print(f"wrote {sum(speakers.values())} files from {len(speakers)} speakers to {args.out} ({duplicates} duplicates dropped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
