"""The settings of a phase, as the job spec's ``pretrain`` and ``train`` sections hold them
(``xsharp.spec`` takes them from here) and as a notebook passes them to ``train``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import Field

from ..modules.base import SpecModel


class PhaseSettings(Protocol):
    epochs: int
    batch_size: int
    learning_rate: float
    momentum: float
    weight_decay: float


class ScheduleSpec(SpecModel):
    """How the learning rate moves over a phase: ``learning_rate`` times a factor of the epoch."""

    kind: Literal["constant", "step", "cosine", "exponential"] = Field("constant", description="constant, step, cosine or exponential")
    every_epochs: float = Field(10.0, gt=0, le=100_000, description="step: epochs between drops by gamma; exponential: epochs per factor gamma")
    gamma: float = Field(0.1, gt=0, le=1, description="step, exponential: the factor per every_epochs")
    final: float = Field(0.0, ge=0, le=1, description="cosine: the last learning rate, as a share of the first")
    warmup_epochs: float = Field(0.0, ge=0, le=100_000, description="rise linearly from 0 over this many epochs first (any kind)")


class PhaseSpec(SpecModel):
    epochs: int = Field(ge=0, le=100_000)
    batch_size: int = Field(gt=0, le=1_000_000)
    learning_rate: float = Field(gt=0, le=100)
    momentum: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0, lt=1)
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="sgd: SGD with momentum; adam: Adam with decoupled weight decay (AdamW)")
    beta1: float = Field(0.9, ge=0, lt=1, description="adam: decay of the running mean of gradients")
    beta2: float = Field(0.999, ge=0, lt=1, description="adam: decay of the running mean of squared gradients")
    eps: float = Field(1e-8, gt=0, le=1, description="adam: added to the root of the squared-gradient mean")
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec, description="learning-rate schedule over the phase")


class PretrainSpec(PhaseSpec):
    """Greedy layer-wise pretraining of every unsupervised module (rbm, autoencoder), in order."""

    epochs: int = Field(20, ge=0, le=100_000, description="epochs per pretrained layer; 0 skips pretraining (closed-form solves of elm, elm_ae still run)")
    batch_size: int = Field(32, gt=0, le=1_000_000)
    learning_rate: float = Field(0.1, gt=0, le=100)
    momentum: float = Field(0.5, ge=0, lt=1)
    weight_decay: float = Field(2e-4, ge=0, lt=1, description="L2 decay on weight matrices")


class TrainSpec(PhaseSpec):
    """Supervised fine-tuning of the whole stack with minibatch SGD + momentum."""

    epochs: int = Field(50, ge=0, le=100_000)
    batch_size: int = Field(32, gt=0, le=1_000_000, description="global batch: split across data-parallel workers")
    learning_rate: float = Field(0.1, gt=0, le=100)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0, lt=1, description="L2 decay on weight matrices")


@dataclass(frozen=True)
class SolveSettings:
    """A solve phase: one pass over the layer's training rows in batches of ``batch_size``. The
    optimiser fields are there for code that reads any phase's settings; nothing descends."""

    batch_size: int
    epochs: int = 1
    learning_rate: float = 0.0
    momentum: float = 0.0
    weight_decay: float = 0.0
