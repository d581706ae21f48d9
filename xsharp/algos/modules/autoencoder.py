"""Auto-encoder with tied weights: encode h = f(x W + b), decode r = sigmoid(h W^T + c).

Pretraining minimises the squared reconstruction error 0.5 * |r - x|^2 averaged over the batch;
with ``corruption`` > 0 the encoder sees a masked input (denoising auto-encoder, Vincent 2008)
and still reconstructs the clean one. With ``sparsity_weight`` > 0 the objective adds
``sparsity_weight * sum_j KL(rho || rho_j)``, where rho_j is hidden unit j's mean activation over
the batch and rho the ``sparsity_target`` (the sparse auto-encoder of Ng's CS294A notes); this
needs sigmoid codes. In a stack only the encoder runs.
"""

from __future__ import annotations

import numpy as np
from pydantic import ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from xsharp.backend import xp_of

from . import activations
from .activations import sigmoid
from .base import MAX_UNITS, Module, Options, flat_size, glorot_uniform
from .dense import affine_backward, affine_forward


class AutoEncoderOptions(Options):
    model_config = ConfigDict(  # _sparsity_needs_sigmoid, for JSON Schema (activation's default is sigmoid)
        json_schema_extra={
            "if": {"required": ["sparsity_weight"], "properties": {"sparsity_weight": {"exclusiveMinimum": 0}}},
            "then": {"properties": {"activation": {"const": "sigmoid"}}},
        }
    )

    hidden: int = Field(gt=0, le=MAX_UNITS, description="number of code units")
    activation: activations.Activation = Field("sigmoid", description="encoder activation")
    corruption: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of inputs zeroed during pretraining (denoising)")
    sparsity_target: float = Field(0.05, gt=0.0, lt=1.0, description="desired mean activation of each code unit (sparse auto-encoder)")
    sparsity_weight: float = Field(0.0, ge=0.0, le=1000.0, description="weight of the KL sparsity penalty; 0 turns it off")

    @model_validator(mode="after")
    def _sparsity_needs_sigmoid(self):
        if self.sparsity_weight > 0 and self.activation != "sigmoid":
            raise PydanticCustomError(
                "rule", "the sparsity penalty needs activation: sigmoid (mean activations in (0, 1)), got {activation}", {"activation": self.activation}
            )
        return self


class AutoEncoder(Module):
    kind = "autoencoder"
    summary = "tied-weight auto-encoder (optionally denoising or sparse), reconstruction pretraining; its encoder when stacked"
    Options = AutoEncoderOptions

    def output_shape(self, in_shape):
        return (self.options.hidden,)

    def param_shapes(self, in_shape):
        visible, hidden = flat_size(in_shape), self.options.hidden
        return {"W": (visible, hidden), "b": (hidden,), "c": (visible,)}

    def init(self, rng, in_shape):
        visible, hidden = flat_size(in_shape), self.options.hidden
        return {
            "W": glorot_uniform(rng, visible, hidden),
            "b": np.zeros(hidden, np.float32),
            "c": np.zeros(visible, np.float32),
        }

    def forward(self, params, x, train=False, rng=None):
        return affine_forward(x, params["W"], params["b"], self.options.activation)

    def backward(self, params, cache, dy):
        dW, db, dx = affine_backward(cache, dy, params["W"], self.options.activation)
        return {"W": dW, "b": db}, dx

    def pretrain_step(self, params, x, rng):
        """Gradients of the whole objective (reconstruction + sparsity penalty); reports the reconstruction error."""
        grads, error, _ = self._pretrain(params, x, rng)
        return grads, error

    def pretrain_objective(self, params, x, rng) -> float:
        """The value :meth:`pretrain_step` descends: reconstruction error plus sparsity penalty."""
        _, error, penalty = self._pretrain(params, x, rng)
        return error + penalty

    def _pretrain(self, params, x, rng):
        W, b, c = params["W"], params["b"], params["c"]
        o = self.options
        x2 = x.reshape(x.shape[0], -1)
        n = x2.shape[0]
        xin = x2
        if o.corruption > 0:
            keep = rng.random(x2.shape, dtype=x2.dtype) >= o.corruption
            xin = x2 * keep
        h = activations.apply(o.activation, xin @ W + b)
        r = sigmoid(h @ W.T + c)
        diff = r - x2
        dzr = diff * r * (1 - r) / n
        dh = dzr @ W
        penalty = 0.0
        if o.sparsity_weight > 0:
            xp, rho = xp_of(h), o.sparsity_target
            rho_hat = xp.clip(h.mean(axis=0), 1e-7, 1 - 1e-7)  # float32 sigmoids can round to 0 or 1
            penalty = o.sparsity_weight * float((rho * xp.log(rho / rho_hat) + (1 - rho) * xp.log((1 - rho) / (1 - rho_hat))).sum())
            dh = dh + o.sparsity_weight * (-rho / rho_hat + (1 - rho) / (1 - rho_hat)) / n
        dzh = dh * activations.grad_from_output(o.activation, h)
        grads = {"W": xin.T @ dzh + dzr.T @ h, "b": dzh.sum(axis=0), "c": dzr.sum(axis=0)}
        return grads, 0.5 * float((diff * diff).sum()) / n, penalty
