"""A-priori componentwise forward error bounds |ŷ_i − y_i| for every `Model` (emulation/forward.py).

Notation (per row; u = unit roundoff of the accumulator, u_o of the output format):
  n entries, width d (n = d − 1 for CRMSNorm), μ = mean x, σ² = biased variance,
  q = mean x², m₁ = mean |x|, X = max |x|, v = σ² + eps (LayerNorm) or q + eps (RMSNorm),
  h = reduction depth of the model (models.py), η = absolute error of one rounding at the
  bottom of the range (half the smallest subnormal; the smallest normal under FTZ),
  γ_k = k·u/(1 − k·u) (Higham, ASNA §3.1: the product of k factors (1 + δ), |δ| ≤ u, is
  1 + θ_k with |θ_k| ≤ γ_k; toolkit/rounding.py).
The condition numbers that appear are κ = sqrt((μ² + σ²)/(σ² + eps)) ≥ m₁/sqrt(v) for the
mean error of LayerNorm (finite on constant rows because eps is in it), and
κ∞ = X/sqrt(σ² + eps) for Welford's running means.

Derivation (proofs/test_bounds_algebra.py checks the algebra), each step beside its code:
 1. the mean: |μ̂ − μ| ≤ Δ := γ_{h+2}·m₁                        bounds/statistics.py
 2. the statistic (two-pass, one-pass, RMSNorm, CRMSNorm)        bounds/statistics.py
    — Welford's (recursion and adjoint forms)                    bounds/welford.py
 3. v̂ = fl(stat̂ + fl(eps)) and 4. r̂ = rsqrt(v̂): ρ_R            bounds/scale.py
 5. n̂_i = fl(ĉ_i·r̂): |n̂_i − n_i| ≤ ρ_N|n_i| + (1 + ρ_N)·Δ/sqrt(v)  bounds/normalized.py
 6. the affine step and 7. the output rounding                  bounds/affine.py (llama below)
Which statistic an op has (and so which step-2 bound) is registry.NormSpec.statistic, mapped
in bounds/statistic_rules.py; whether it subtracts a mean is NormSpec.centred.

Probabilistic form (`kind="probabilistic"`, labelled as such). Assumption (Higham and Mary
2019): each rounding's relative error has mean zero given all earlier ones and is at most u
in size; the data are fixed. Every γ_k is replaced by γ̃_k(λ) = exp(λ·sqrt(k)·u +
k·u²/(1 − u)) − 1 (their Thm 2.8: fails with probability ≤ 2·exp(−λ²(1 − u)²/2)). The sums
also have the sharper partial-sum form of the same martingale argument (bounds/statistics.py,
bounds/welford.py, on toolkit/sums.py and toolkit/martingale.py). λ = 4.5: every step fails
with probability < 9·10⁻⁵, and an element's bound uses at most six of them, so it fails with
probability < 10⁻³ per element (tests/test_precision_probabilistic.py checks the fraction on
2000 random rows of every model). The rsqrt error α, the scale's rounding of eps, the output
rounding and the second-order terms stay worst-case: they are single, possibly systematic
errors (bounds/scale.py measures them against their binades). The assumption is about data
whose roundings behave randomly: on structured rows it can fail, e.g. on constant fp32 rows a
sequential sum's partial sums k·c round the same way again and again, and 2% of the
elements of such rows (d = 64, the two_pass_sequential model) exceed the probabilistic bound
(the worst-case bound holds there, as everywhere).

Every bound is multiplied by SAFETY = 1 + 2^-20: the bound itself and the row statistics it
uses are evaluated in binary64, with relative error far below 2^-20 for n ≤ 2^24.
Rows where an intermediate may overflow (domains.overflow_threshold), or with an input that
the accumulator cannot hold exactly (fp32 data in a bf16 accumulator), get an infinite bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from normtheory.formats import FORMATS, FloatFormat, as_format
from normtheory.precision.bounds.affine import affine_error, output_rounding_error
from normtheory.precision.bounds.normalized import Normalized, shared_or_evaluated
from normtheory.precision.models import Model
from normtheory.precision.toolkit.context import BoundContext
from normtheory.precision.toolkit.rounding import SAFETY
from normtheory.registry import get_spec


@dataclass(frozen=True)
class ForwardBound:
    pre_rounding: np.ndarray  # bound on |z − y| before the output rounding (or llama's chain)
    total: np.ndarray  # bound on |ŷ − y| for the output in the output format


def forward_bound(op: str, x: ArrayLike, w: ArrayLike | None = None, b: ArrayLike | None = None, *, model: Model,
                  eps: float, affine: str = "none", out_format: str | FloatFormat = "fp32",
                  kind: str = "worst", normalized: Normalized | None = None) -> ForwardBound:
    """Componentwise bound on |ŷ − y| for `model` against the exact op with the model's eps_mode.

    An infinite element means no bound holds there (an infinite γ_k, ρ ≥ 1, possible overflow).
    `normalized`: steps 1–5 of these rows for this model, kind and eps, when the caller has them
    (precision.tolerances shares them with the backward bounds).
    """
    spec, out, ctx = get_spec(op), as_format(out_format), BoundContext(model, kind)
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n = x.shape[1]
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    b = np.zeros(n) if b is None else np.asarray(b, dtype=np.float64)
    with np.errstate(all="ignore"):
        norm = shared_or_evaluated(spec, x, ctx, eps=eps, shared=normalized)
        z_abs, pre, total = _output_error(np.abs(norm.n), norm.err_n, w=w, b=b, affine=affine, ctx=ctx, out=out)
        unsafe = norm.unsafe.copy()
        affine_format = out if model.output == "llama" else ctx.acc
        if not (affine_format.is_representable(w).all() and affine_format.is_representable(b).all()):
            unsafe[:] = True  # weights must be exact where they are used (fp16 weights in bf16: no)
        pre = np.where(unsafe[:, None], np.inf, pre * SAFETY)
        total = np.where(unsafe[:, None] | (z_abs + total > out.max_finite), np.inf, total * SAFETY)
    # NaN can only come from 0·inf or inf − inf in the bound formulas: no bound there
    return ForwardBound(pre_rounding=np.where(np.isnan(pre), np.inf, pre), total=np.where(np.isnan(total), np.inf, total))


def _output_error(n_abs: np.ndarray, err_n: np.ndarray, *, w: np.ndarray, b: np.ndarray, affine: str, ctx: BoundContext,
                  out: FloatFormat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 6–7: (|z|, bound before the output rounding, bound in the output format). llama: n̂
    is rounded to the output format first (E_n + u_o(|n| + E_n) + η_o) and the affine step is
    done there, so the chain ends in the output format."""
    model, acc = ctx.model, ctx.acc
    offset_u = acc.unit_roundoff if model.offset_format is None else FORMATS[model.offset_format].unit_roundoff
    u_o, eta_o = out.unit_roundoff, out.min_subnormal / 2
    if model.output == "llama":
        err_n = err_n + u_o * (n_abs + err_n) + eta_o
        z_abs, pre = affine_error(affine, n_abs, err_n, w, b, u=u_o, eta=eta_o, offset_u=offset_u)
        return z_abs, pre, pre
    z_abs, pre = affine_error(affine, n_abs, err_n, w, b, u=ctx.u, eta=ctx.eta, offset_u=offset_u)
    return z_abs, pre, output_rounding_error(pre, z_abs, out=out, acc=acc, truncate=model.output == "truncate")
