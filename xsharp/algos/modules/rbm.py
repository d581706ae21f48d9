"""Restricted Boltzmann machine trained by contrastive divergence (CD-k) or persistent CD.

Hidden units are Bernoulli. Visible units are Bernoulli (inputs in [0, 1]) or Gaussian with
unit variance (real inputs, best standardised to zero mean and unit variance), whose
reconstruction is linear, v = h W^T + b_v, instead of a sigmoid.

In a stack it acts as a sigmoid layer p(h=1 | v) = sigmoid(v W + b_h); pretraining runs
contrastive divergence (Hinton 2002) on the layer's input. With ``persistent: true`` the
negative phase continues one Gibbs chain from update to update instead of restarting at the
data (PCD, Tieleman 2008). The chain's state ("fantasy particles", one per row of the batch)
is kept on the module instance, not in the parameters: it starts from the first batch's data
and starts again from the data whenever the batch size changes (e.g. the short last batch of an
epoch), and a resumed run starts a fresh chain.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from xsharp.backend import xp_of

from .activations import sigmoid_
from .base import MAX_UNITS, Module, Options, flat_size
from .dense import affine_backward, affine_forward


class RBMOptions(Options):
    hidden: int = Field(gt=0, le=MAX_UNITS, description="number of hidden units")
    k: int = Field(1, ge=1, le=100, description="Gibbs steps per contrastive-divergence update (CD-k)")
    visible: Literal["bernoulli", "gaussian"] = Field(
        "bernoulli", description="visible units: bernoulli (inputs in [0, 1]) or gaussian (unit variance, linear reconstruction)"
    )
    # None rather than False so that specs which leave it out read back unchanged
    persistent: bool = Field(False, description="true: persistent CD, the negative Gibbs chain goes on from one update to the next; false: CD-k")


class RBM(Module):
    kind = "rbm"
    summary = "restricted Boltzmann machine (Bernoulli or Gaussian visible units), CD-k or persistent CD; a sigmoid layer when stacked"
    Options = RBMOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.chain: Any = None  # persistent CD: the visible state of the negative chain

    def output_shape(self, in_shape):
        return (self.options.hidden,)

    def param_shapes(self, in_shape):
        visible, hidden = flat_size(in_shape), self.options.hidden
        return {"W": (visible, hidden), "b_h": (hidden,), "b_v": (visible,)}

    def init(self, rng, in_shape):
        visible, hidden = flat_size(in_shape), self.options.hidden
        return {
            "W": (0.01 * rng.standard_normal((visible, hidden))).astype(np.float32),
            "b_h": np.zeros(hidden, np.float32),
            "b_v": np.zeros(visible, np.float32),
        }

    def forward(self, params, x, train=False, rng=None):
        return affine_forward(x, params["W"], params["b_h"], "sigmoid")

    def backward(self, params, cache, dy):
        # b_v only shapes the generative direction; supervised fine-tuning leaves it alone.
        dW, db, dx = affine_backward(cache, dy, params["W"], "sigmoid")
        return {"W": dW, "b_h": db}, dx

    def backward_params(self, params, cache, dy):
        dW, db, _ = affine_backward(cache, dy, params["W"], "sigmoid", need_dx=False)
        return {"W": dW, "b_h": db}

    # ----------------------------------------------------------------- sampling
    # Each product below is a fresh array that the bias and the sigmoid then overwrite in place:
    # CD-1 is 5 matrix products of the batch, and little else should cost.
    def visible_mean(self, params, h):
        """E[v | h]: sigmoid for Bernoulli units, linear for Gaussian ones."""
        a = h @ params["W"].T
        a += params["b_v"]
        return a if self.options.visible == "gaussian" else sigmoid_(a)

    def sample_visible(self, mean, rng):
        if self.options.visible == "gaussian":
            return mean + rng.standard_normal(mean.shape, dtype=mean.dtype)
        return bernoulli(mean, rng)

    @staticmethod
    def sample_hidden(ph, rng):
        return bernoulli(ph, rng)

    def hidden_prob(self, params, v):
        z = v @ params["W"]
        z += params["b_h"]
        return sigmoid_(z)

    def _persistent_chain(self, v0):
        chain = self.chain
        if chain is None or chain.shape != v0.shape or chain.dtype != v0.dtype or xp_of(chain) is not xp_of(v0):
            chain = v0.copy()  # (re)start the fantasy particles at the data
        return chain

    # ----------------------------------------------------------------- pretraining
    def pretrain_step(self, params, x, rng):
        v0 = x.reshape(x.shape[0], -1)
        n = v0.shape[0]
        ph0 = self.hidden_prob(params, v0)
        if self.options.persistent:
            v = self._persistent_chain(v0)
            for _ in range(self.options.k):
                v = self.sample_visible(self.visible_mean(params, self.sample_hidden(self.hidden_prob(params, v), rng)), rng)
            self.chain = v
            v_neg, ph_neg = v, self.hidden_prob(params, v)
            recon = self.visible_mean(params, self.sample_hidden(ph0, rng))  # the error still measures the data's reconstruction
        else:
            ph = ph0
            for _ in range(self.options.k):
                pv = self.visible_mean(params, self.sample_hidden(ph, rng))  # mean-field visible reconstruction, the usual CD practice
                ph = self.hidden_prob(params, pv)
            v_neg, ph_neg, recon = pv, ph, pv
        xp = xp_of(v0)
        dW = v0.T @ ph0
        dW -= v_neg.T @ ph_neg
        diff = v0 - recon
        grads = {
            "W": xp.divide(dW, -n, out=dW),  # -(v0^T ph0 - v_neg^T ph_neg) / n
            "b_h": -(ph0 - ph_neg).sum(axis=0) / n,
            "b_v": -(diff if recon is v_neg else v0 - v_neg).sum(axis=0) / n,
        }
        diff *= diff
        error = float(diff.sum()) / n
        return grads, error


def bernoulli(p, rng):
    """1.0 where a uniform draw falls below ``p``, else 0.0 (in the draw's own array)."""
    u = rng.random(p.shape, dtype=p.dtype)
    return xp_of(p).less(u, p, out=u)
