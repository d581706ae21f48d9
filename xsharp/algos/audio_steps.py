"""The audio steps of ``data.features``: waveforms to log-mel energies or MFCCs, then per-utterance
normalisation and stacked neighbouring frames. Their transforms run on CuPy too."""

from __future__ import annotations

from pydantic import Field

from . import audio
from .feature_step import Step, StepOptions


class LogMelOptions(StepOptions):
    sample_rate: int | None = Field(None, ge=1000, le=384_000, description="of the waveforms; default: data.sample_rate")
    n_mels: int = Field(40, gt=0, le=512, description="mel bands")
    frame_ms: float = Field(25.0, gt=0, le=1000, description="frame length in milliseconds")
    hop_ms: float = Field(10.0, gt=0, le=1000, description="step between frames in milliseconds")
    n_fft: int | None = Field(None, gt=0, le=65536, description="FFT size; default: the next power of two above the frame")
    fmin: float = Field(20.0, ge=0, le=192_000, description="lowest band edge in Hz")
    fmax: float | None = Field(None, gt=0, le=192_000, description="highest band edge in Hz; default: half the sample rate")
    pre_emphasis: float = Field(0.97, ge=0, lt=1, description="first-order high-pass coefficient; 0 turns it off")


class LogMel(Step):
    kind = "logmel"
    summary = "log mel-band energies of 25 ms frames: waveforms (n, samples) -> (n, frames, n_mels)"
    Options = LogMelOptions
    on_device = True

    def _mel_options(self) -> dict:
        o = self.options.model_dump()
        return {"sample_rate": o.pop("sample_rate") or 16000, **o}

    def transform(self, x):
        return audio.log_mel(x, **self._mel_options())


class MFCCOptions(LogMelOptions):
    n_mfcc: int = Field(13, gt=0, le=512, description="cepstral coefficients kept (DCT of the log-mel bands)")


class MFCC(LogMel):
    kind = "mfcc"
    summary = "MFCCs (DCT of log-mel): waveforms (n, samples) -> (n, frames, n_mfcc)"
    Options = MFCCOptions

    def transform(self, x):
        return audio.mfcc(x, **self._mel_options())


class CMVNOptions(StepOptions):
    variance: bool = Field(True, description="divide by the standard deviation too, not only subtract the mean")


class CMVN(Step):
    kind = "cmvn"
    summary = "per-utterance mean (and variance) normalisation of each coefficient over time"
    Options = CMVNOptions
    on_device = True

    def transform(self, x):
        return audio.cmvn(x, self.options.variance)


class StackFramesOptions(StepOptions):
    context: int = Field(2, ge=0, le=50, description="neighbouring frames on each side stacked with each frame")
    stride: int = Field(1, ge=1, le=100, description="keep every stride-th stacked frame")


class StackFrames(Step):
    kind = "stack_frames"
    summary = "each frame with its neighbours: (n, T, F) -> (n, T / stride, (2 context + 1) F)"
    Options = StackFramesOptions
    on_device = True

    def transform(self, x):
        return audio.stack_frames(x, self.options.context, self.options.stride)
