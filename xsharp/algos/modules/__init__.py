"""The module library. Every module follows the interface in :mod:`.base`."""

from __future__ import annotations

from .autoencoder import AutoEncoder
from .avgpool import AvgPool
from .base import Module, Options
from .batchnorm import BatchNorm
from .conv2d import Conv2D
from .crbm import CRBM
from .dense import Dense
from .dropout import Dropout
from .elm import ELM, ELMAutoEncoder
from .maxpool import MaxPool
from .rbm import RBM
from .softmax import Softmax, log_softmax, nll_loss
from .sparse_coding import SparseCoding

MODULES: dict[str, type[Module]] = {
    cls.kind: cls for cls in (Dense, Softmax, Dropout, BatchNorm, RBM, AutoEncoder, SparseCoding, Conv2D, MaxPool, AvgPool, CRBM, ELM, ELMAutoEncoder)
}

# Options that stand for the number of classes: left out, they take the data's; given, they must match it.
CLASS_OPTIONS: dict[str, str] = {Softmax.kind: "units", ELM.kind: "outputs"}


def with_classes(kind: str, options: dict | None, n_classes: int) -> dict:
    """``options`` with the data's class count where ``kind`` takes one (CLASS_OPTIONS) and none is given."""
    options = dict(options or {})
    per_class = CLASS_OPTIONS.get(kind)
    if per_class is not None and options.get(per_class) is None:
        options[per_class] = int(n_classes)
    return options


def build(kind: str, options: dict | Options | None = None) -> Module:
    """A module instance from its spec name and options."""
    try:
        cls = MODULES[kind]
    except KeyError:
        raise ValueError(f"unknown module {kind!r}; known: {', '.join(sorted(MODULES))}") from None
    return cls(options)


__all__ = [
    "CLASS_OPTIONS",
    "MODULES",
    "Module",
    "Options",
    "build",
    "Dense",
    "Softmax",
    "Dropout",
    "BatchNorm",
    "RBM",
    "AutoEncoder",
    "SparseCoding",
    "Conv2D",
    "MaxPool",
    "AvgPool",
    "CRBM",
    "ELM",
    "ELMAutoEncoder",
    "log_softmax",
    "nll_loss",
    "with_classes",
]
