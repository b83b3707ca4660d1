"""A-priori componentwise bounds on the backward outputs gx, gw, gb of emulation.backward.

The backward kernel recomputes n̂ exactly as the forward does (bounds/normalized.py, steps 1–5),
forms the weight factor ĝ, the row sums and gx = r·(g − m − φ·K) (eps inside; B8 for eps
outside), and reduces gy·n̂ and gy over the rows for gw and gb. Each step's derivation is
beside its code:
 B1–B6, B8  gx: the weight factor, the row sums, the scalings, T̂, the product by r̂, the output
            rounding, eps outside the root                                  bounds/backward_gx.py
 B7, P1–P4  gw and gb: the column sums over the rows and their probabilistic form, in which
            the rows' shared errors are modelled, not summed             bounds/backward_weights.py
Notation as in bounds/forward.py (u, η of the accumulator; γ_k, or γ̃_k for the probabilistic kind).

FAILURE_PROBABILITY bounds the per-element failure probability of every probabilistic
backward bound by a union over the probabilistic statements it uses (gx: the forward's
mean and statistic forms, two each, and the forms of A, B, S, two each — ten of
2·exp(−λ²(1 − u)²/2) < 8.8·10⁻⁵ each, bf16's u included; gw: P4's split, bounds/backward_weights.py).
Unsafe rows (forward overflow, inputs not representable in the accumulator, an intermediate
that may overflow) get an infinite bound, and so do the gw/gb they enter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from normtheory.formats import FloatFormat, as_format
from normtheory.precision.bounds.backward_gx import gx_bound
from normtheory.precision.bounds.backward_weights import gb_bound, gw_bound
from normtheory.precision.bounds.normalized import Normalized, shared_or_evaluated
from normtheory.precision.models import Model
from normtheory.precision.toolkit.context import BoundContext
from normtheory.precision.toolkit.rounding import SAFETY
from normtheory.registry import get_spec

FAILURE_PROBABILITY = 1e-3  # per element, for kind="probabilistic" (module docstring)


@dataclass(frozen=True)
class BackwardBound:
    """Bounds for the requested quantities (None for those not requested)."""

    gx: np.ndarray | None  # (rows, n): bound on |ĝx − gx| in the gradient format
    gw: np.ndarray | None  # (n,): bound on |ĝw − gw| in the weight format
    gb: np.ndarray | None  # (n,): bound on |ĝb − gb| in the weight format
    gx_pre: np.ndarray | None  # (rows, n): the same before the output rounding
    gw_pre: np.ndarray | None
    gb_pre: np.ndarray | None


def backward_bound(op: str, x: ArrayLike, gy: ArrayLike, w: ArrayLike | None = None, b: ArrayLike | None = None, *,
                   model: Model, eps: float, affine: str = "none", grad_format: str | FloatFormat = "fp32",
                   w_format: str | FloatFormat | None = None, kind: str = "worst",
                   quantities: tuple[str, ...] = ("gx", "gw", "gb"), normalized: Normalized | None = None) -> BackwardBound:
    """Componentwise bounds on gx (rows, n), gw and gb (n,) for `model`; inf where none holds.

    Only the `quantities` asked for are computed (the others are None): gx costs most.
    `normalized`: steps 1–5 of these rows for this model, kind and eps, when the caller has them
    (precision.tolerances shares them with the forward bound).
    """
    spec, ctx = get_spec(op), BoundContext(model, kind)
    out = as_format(grad_format)
    w_out = as_format(w_format or grad_format)
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    gy = np.asarray(gy, dtype=np.float64).reshape(x.shape)
    w = np.ones(x.shape[1]) if w is None else np.asarray(w, dtype=np.float64)
    parts: dict[str, np.ndarray | None] = dict.fromkeys(("gx", "gw", "gb", "gx_pre", "gw_pre", "gb_pre"))
    with np.errstate(all="ignore"):
        norm = shared_or_evaluated(spec, x, ctx, eps=eps, shared=normalized)
        gy_not_exact = np.asarray(~ctx.acc.is_representable(gy).all(axis=1))  # gy must load exactly into the accumulator
        unsafe = norm.unsafe | gy_not_exact
        product_format = out if model.output == "llama" else ctx.acc
        if affine != "none" and not product_format.is_representable(w).all():
            unsafe[:] = True  # the weight must be exact where it is multiplied
        E_n = np.where(unsafe[:, None], np.inf, norm.err_n)
        if "gx" in quantities:
            parts["gx_pre"], parts["gx"] = gx_bound(spec, norm, x=x, gy=gy, w=w, affine=affine, eps=eps, out=out,
                                                    E_n=E_n, unsafe=unsafe)
        # B7: column reductions over the rows (they use n̂, not gx's intermediates)
        if "gw" in quantities:
            parts["gw_pre"], parts["gw"] = gw_bound(spec, norm, x=x, gy=gy, eps=eps, out=out, w_out=w_out, E_n=E_n)
        if "gb" in quantities:
            parts["gb_pre"], parts["gb"] = gb_bound(norm, gy=gy, w_out=w_out, gy_not_exact=gy_not_exact)
        bounds = {name: None if p is None else p * SAFETY for name, p in parts.items()}
    # NaN can only come from 0·inf or inf − inf in the bound formulas: no bound there
    return BackwardBound(**{name: None if p is None else np.where(np.isnan(p), np.inf, p) for name, p in bounds.items()})
