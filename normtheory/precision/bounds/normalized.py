"""Steps 1–5 of the forward derivation, assembled: the normalized values n̂ the kernel computes.

 1–2. the statistic and its error (bounds/statistics.py, bounds/welford.py; chosen per registry
      statistic by bounds/statistic_rules.py);
 3–4. the inverse scale r̂ (bounds/scale.py);
 5. n̂_i = fl(ĉ_i·r̂) = (c_i + δμ)·r·(1 + θ), |θ| ≤ ρ_N := (1 + ρ_R)(1 + u)² − 1 (one (1 + u)
    for a statistic without a mean — RMSNorm and CRMSNorm — which rounds only the product):
    |n̂_i − n_i| ≤ ρ_N|n_i| + (1 + ρ_N)·Δ/sqrt(v) — the second term is γ_{h+2}·κ at most.
DAZ (`ftz` models flush subnormal inputs on load): each input moves by at most η_in, the mean by
η_in, the root of the statistic by 2η_in (it is a Euclidean norm of the centred row over
sqrt(d)), each n_i by η_in·r; the statistics' probabilistic forms are of the loaded x'.
Rows where an intermediate may overflow (bounds/domains.py, or the statistic's own row check),
or with an input that the accumulator cannot hold exactly (fp32 data in a bf16 accumulator),
are marked unsafe: the bounds are infinite there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normtheory.precision.bounds.domains import spec_overflow_threshold
from normtheory.precision.bounds.scale import scale_error
from normtheory.precision.bounds.statistic_rules import placement_for, rule_for
from normtheory.precision.bounds.statistics import StatisticError
from normtheory.precision.toolkit.context import BoundContext
from normtheory.registry import NormSpec


@dataclass(frozen=True)
class Normalized:
    """What forward and backward bounds share: the exact normalized values and their error."""

    n: np.ndarray  # exact normalized values (x − μ)·r or x·r, evaluated in binary64
    err_n: np.ndarray  # bound on |n̂ − n| for the kernel's n̂ = fl(fl(x − μ̂)·r̂)
    r: np.ndarray  # exact 1/scale per row
    rho_R: np.ndarray  # bound on |r̂/r − 1| per row
    rho_stat: np.ndarray  # its statistic's part: bound on |z/r − 1|, z = 1/scalê exactly (no rsqrt error)
    mean_err: np.ndarray  # bound Δ on |μ̂ − μ| per row (0 without a mean), DAZ's shift included
    unsafe: np.ndarray  # rows with no bound (possible overflow, inputs the accumulator cannot hold)
    ctx: BoundContext  # the model, kind and λ these bounds are of
    d: int  # the statistic's divisor (StatisticRule.divisor: the model width for the mean statistics)
    eps: float  # the eps these bounds are of
    # an eps floor that pins the scale (bounds/statistic_rules.EPS_FLOORS): rows where the kernel and the
    # exact formula both take the eps floor (no projection in the backward), and rows where they may differ
    floor_rows: np.ndarray | None = None
    kink_rows: np.ndarray | None = None


def statistic_error(spec: NormSpec, x: np.ndarray, ctx: BoundContext) -> StatisticError:
    """Steps 1–2 for the op's statistic, with DAZ's shift of the inputs added (mean and statistic)."""
    rule = rule_for(spec)
    stat = rule.error(x, ctx, rule.divisor(spec, x.shape[1]))
    # DAZ moves each input by at most η_in: the mean by η_in, the root of the statistic by
    # 2η_in (it is a Euclidean norm of the centred row over sqrt(d)), each n_i by η_in·r.
    eta_in = ctx.eta_in
    mean_err = stat.mean_err + (eta_in if spec.centred else 0.0)
    err_stat = stat.err + 4 * eta_in * np.sqrt(stat.value) + 4 * eta_in**2
    return StatisticError(mean_err, stat.value, err_stat)


def normalized_error(spec: NormSpec, x: np.ndarray, ctx: BoundContext, *, eps: float,
                     scale_only: bool = False) -> Normalized:
    """Steps 1–5 of the derivation: the normalized values n̂ the kernel computes, bounded.

    `scale_only` (probabilistic kind, λ = 1): rho_stat is then a sub-Gaussian scale of the
    statistic's part, not a bound (bounds/scale.py); the backward's row scales use it.

    Infinite and NaN intermediates (an infinite γ_k, ρ ≥ 1) are expected here: no warnings.
    """
    with np.errstate(all="ignore"):
        return _normalized_error(spec, x, ctx, eps=eps, scale_only=scale_only)


def shared_or_evaluated(spec: NormSpec, x: np.ndarray, ctx: BoundContext, *, eps: float,
                        shared: Normalized | None) -> Normalized:
    """`shared` when the caller already has `normalized_error(spec, x, ctx, eps=eps)` of these rows
    (precision.tolerances evaluates it once for y, gx, gw and gb), else that evaluation. A shared
    value of another model, kind, eps or shape is a programming error (ValueError), not a bound."""
    if shared is None:
        return normalized_error(spec, x, ctx, eps=eps)
    if (shared.ctx != ctx or shared.eps != eps or shared.n.shape != x.shape
            or shared.d != rule_for(spec).divisor(spec, x.shape[1])):
        raise ValueError("the shared normalized values are of another model, kind, eps or shape")
    return shared


def _normalized_error(spec: NormSpec, x: np.ndarray, ctx: BoundContext, *, eps: float, scale_only: bool) -> Normalized:
    u, eta, eta_in = ctx.u, ctx.eta, ctx.eta_in
    stat = statistic_error(spec, x, ctx)
    scale = scale_error(stat.value, stat.err, ctx=ctx, eps=eps, placement=placement_for(spec, ctx.model),
                        scale_only=scale_only)
    r, rho_R = scale.r, scale.rho_R
    centred = x - x.mean(axis=1, keepdims=True) if spec.centred else x
    n_values = centred * r[:, None]
    # n̂ = fl(fl(x − μ̂)·r̂): two roundings with a mean (the subtraction), the product alone otherwise
    rho_N = (1 + rho_R) * (1 + u) ** (2 if spec.centred else 1) - 1
    err_n = rho_N[:, None] * np.abs(n_values) + ((1 + rho_N) * (stat.mean_err + eta_in) * r)[:, None] + eta
    err_n = np.where(np.isnan(err_n), np.inf, err_n)  # 0·inf: an infinite γ_k (k·u ≥ 1)
    return Normalized(n_values, err_n, r, rho_R, scale.rho_stat, stat.mean_err, unsafe_rows(spec, x, ctx), ctx,
                      rule_for(spec).divisor(spec, x.shape[1]), eps, scale.floor_rows, scale.kink_rows)


def unsafe_rows(spec: NormSpec, x: np.ndarray, ctx: BoundContext) -> np.ndarray:
    """Rows with no bound: an intermediate may overflow, or an input is not exact in the accumulator."""
    rule = rule_for(spec)
    if rule.row_overflow is not None:
        unsafe = rule.row_overflow(x, ctx)
    else:
        unsafe = np.abs(x).max(axis=1) > spec_overflow_threshold(spec, ctx.model, x.shape[1])
    # inputs must be exact in the accumulator (bf16 accumulation of fp32 data is not modelled)
    return unsafe | ~ctx.acc.is_representable(x).all(axis=1)
