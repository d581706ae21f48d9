"""Sparse coding: a learned dictionary of unit-norm atoms D (atoms x inputs), and per-sample
codes z = argmin_z 0.5 * |x - z D|^2 + l1_weight * |z|_1 (the lasso), found by ISTA or FISTA
(Beck & Teboulle 2009) with step 1 / L, L the largest eigenvalue of D D^T.

In a stack the layer outputs the codes. Pretraining alternates as in Olshausen & Field:
solve for the codes, then step the dictionary down the gradient of the reconstruction error
0.5 * |x - z D|^2 / n with the codes held fixed. Atoms are kept at unit norm: the layer always
uses D with its rows normalised (so gradients flow through the normalisation and are
tangent to the unit sphere), and each pretraining step first writes the normalised rows back
into the parameters, undoing the drift of the previous optimiser step.

Backward differentiates the solution itself: on each sample's active set S = {j : z_j != 0}
the lasso's optimality condition D_S x - D_S D_S^T z_S = l1_weight * sign(z_S) is linear in
x, so dz_S / dx = (D_S D_S^T)^-1 D_S, and likewise for D_S (implicit differentiation).
Fine-tuning therefore reaches both the dictionary and the layers below. The gradient is exact
when the solver has converged, a linear approximation of the truncated solver otherwise.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from xsharp.backend import xp_of

from .base import MAX_UNITS, Module, Options, flat_size


class SparseCodingOptions(Options):
    atoms: int = Field(gt=0, le=MAX_UNITS, description="number of dictionary atoms (code units)")
    l1_weight: float = Field(0.1, gt=0.0, le=1e4, description="weight of the L1 penalty on the codes (the lasso's lambda)")
    algorithm: Literal["ista", "fista"] = Field("fista", description="code solver: ista, or fista (accelerated, fewer iterations)")
    iterations: int = Field(50, ge=1, le=10_000, description="solver iterations per batch")


def soft_threshold(z, t):
    xp = xp_of(z)
    return xp.sign(z) * xp.maximum(xp.abs(z) - t, 0)


def normalise_rows(D):
    norms = xp_of(D).sqrt((D * D).sum(axis=1))
    norms = xp_of(D).maximum(norms, np.finfo(D.dtype).tiny)
    return D / norms[:, None], norms


class SparseCoding(Module):
    kind = "sparse_coding"
    summary = "sparse coding: learned unit-norm dictionary, lasso codes by ISTA/FISTA; outputs the codes when stacked"
    Options = SparseCodingOptions

    def output_shape(self, in_shape):
        return (self.options.atoms,)

    def param_shapes(self, in_shape):
        return {"D": (self.options.atoms, flat_size(in_shape))}

    def init(self, rng, in_shape):
        D = rng.standard_normal((self.options.atoms, flat_size(in_shape)))
        return {"D": (D / np.linalg.norm(D, axis=1, keepdims=True)).astype(np.float32)}

    def codes(self, x2, Dn):
        """Lasso codes (n, atoms) of the rows of x2 over the unit-norm dictionary Dn."""
        xp = xp_of(x2)
        o = self.options
        G = Dn @ Dn.T
        step = 1 / xp.linalg.eigvalsh(G)[-1]  # a 0-d array: stays on the device
        b = x2 @ Dn.T  # so that the gradient of the smooth part at z is z G - b
        threshold = o.l1_weight * step
        z = xp.zeros((x2.shape[0], Dn.shape[0]), dtype=x2.dtype)
        if o.algorithm == "ista":
            for _ in range(o.iterations):
                z = soft_threshold(z - step * (z @ G - b), threshold)
            return z
        y, t = z, 1.0
        for _ in range(o.iterations):
            z_next = soft_threshold(y - step * (y @ G - b), threshold)
            t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
            y = z_next + ((t - 1) / t_next) * (z_next - z)
            z, t = z_next, t_next
        return z

    def forward(self, params, x, train=False, rng=None):
        x2 = x.reshape(x.shape[0], -1)
        Dn, norms = normalise_rows(params["D"])
        z = self.codes(x2, Dn)
        return z, (x.shape, x2, z, Dn, norms)

    def backward(self, params, cache, dy):
        x_shape, x2, z, Dn, norms = cache
        xp = xp_of(z)
        k = Dn.shape[0]
        active = (z != 0).astype(z.dtype)
        # Per sample, solve G_S u_S = dy_S; the identity on inactive atoms keeps each system regular.
        G = Dn @ Dn.T
        ridge = 10 * k * float(np.finfo(z.dtype).eps)  # guards nearly dependent active atoms in float32
        A = active[:, :, None] * G * active[:, None, :] + (1 - active)[:, :, None] * xp.eye(k, dtype=z.dtype) + ridge * xp.eye(k, dtype=z.dtype)
        u = xp.linalg.solve(A, (dy * active)[:, :, None])[:, :, 0] * active
        dx = u @ Dn
        dDn = u.T @ (x2 - z @ Dn) - z.T @ dx
        return {"D": _through_normalisation(dDn, Dn, norms)}, dx.reshape(x_shape)

    def pretrain_step(self, params, x, rng):
        """Dictionary gradient of 0.5 * |x - z D|^2 / n with the codes z fixed."""
        D = params["D"]
        Dn, _ = normalise_rows(D)
        D[...] = Dn  # the previous step moved the atoms off the unit sphere
        x2 = x.reshape(x.shape[0], -1)
        n = x2.shape[0]
        z = self.codes(x2, D)
        residual = x2 - z @ D
        dDn = -(z.T @ residual) / n
        return {"D": _through_normalisation(dDn, D, xp_of(D).ones(D.shape[0], dtype=D.dtype))}, 0.5 * float((residual**2).sum()) / n


def _through_normalisation(dDn, Dn, norms):
    """Gradient w.r.t. D from the gradient w.r.t. Dn = D / |D_row|."""
    return (dDn - Dn * (dDn * Dn).sum(axis=1, keepdims=True)) / norms[:, None]
