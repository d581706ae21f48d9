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
from .maxpool import MaxPool
from .rbm import RBM
from .softmax import Softmax, log_softmax, nll_loss
from .sparse_coding import SparseCoding

MODULES: dict[str, type[Module]] = {
    cls.kind: cls
    for cls in (Dense, Softmax, Dropout, BatchNorm, RBM, AutoEncoder, SparseCoding, Conv2D, MaxPool, AvgPool, CRBM)
}


def build(kind: str, options: dict | Options | None = None) -> Module:
    """A module instance from its spec name and options."""
    try:
        cls = MODULES[kind]
    except KeyError:
        raise ValueError(f"unknown module {kind!r}; known: {', '.join(sorted(MODULES))}") from None
    return cls(options)


__all__ = [
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
    "log_softmax",
    "nll_loss",
]
