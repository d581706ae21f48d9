"""The module library. Every module follows the interface in :mod:`.base`."""

from __future__ import annotations

from .autoencoder import AutoEncoder
from .base import Module, Options
from .dense import Dense
from .rbm import RBM
from .softmax import Softmax, log_softmax, nll_loss

MODULES: dict[str, type[Module]] = {cls.kind: cls for cls in (Dense, Softmax, RBM, AutoEncoder)}


def build(kind: str, options: dict | Options | None = None) -> Module:
    """A module instance from its spec name and options."""
    try:
        cls = MODULES[kind]
    except KeyError:
        raise ValueError(f"unknown module {kind!r}; known: {', '.join(sorted(MODULES))}") from None
    return cls(options)


__all__ = ["MODULES", "Module", "Options", "build", "Dense", "Softmax", "RBM", "AutoEncoder", "log_softmax", "nll_loss"]
