"""Dropout (Srivastava 2014), inverted: in training each input is zeroed with probability
``rate`` and the survivors are scaled by 1 / (1 - rate), so evaluation is the identity.

The mask comes from the step's random generator, one number per input, drawn for the
whole global batch: data-parallel workers drop exactly what one worker would.
"""

from __future__ import annotations

from pydantic import Field

from .base import Module, Options


class DropoutOptions(Options):
    rate: float = Field(0.5, ge=0.0, lt=1.0, description="probability that an input is zeroed during training")


class Dropout(Module):
    kind = "dropout"
    summary = "inverted dropout: zeroes a random share of inputs while training, identity at evaluation"
    Options = DropoutOptions

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def param_shapes(self, in_shape):
        return {}

    def init(self, rng, in_shape):
        return {}

    def forward(self, params, x, train=False, rng=None):
        rate = self.options.rate
        if not train or rate == 0:
            return x, None
        if rng is None:
            raise ValueError("dropout in training needs the step's random generator (rng)")
        mask = (rng.random(x.shape, dtype=x.dtype) >= rate).astype(x.dtype) / (1 - rate)
        return x * mask, mask

    def backward(self, params, cache, dy):
        mask = cache
        return {}, dy if mask is None else dy * mask
