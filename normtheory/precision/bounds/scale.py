"""Steps 3–4 of the forward derivation: the inverse scale r̂ from the statistic, bounded.

Notation as in bounds/forward.py; E_stat the bound on the statistic's error (bounds/statistics.py),
α the rsqrt's own relative error (`rsqrt_relative_error`).
 3. v̂ = fl(var̂ + fl(eps)): |v̂ − v| ≤ E_v := E_var + e_ε + u·(v + E_var + e_ε) + η with
    e_ε = u·eps + η (eps itself may round into the subnormals of fp16); ρ_v = E_v/v.
 4. r̂ = rsqrt(v̂) within α (relative). (1 + t)^(−1/2) is convex and decreasing, so on
    |t| ≤ ρ_v its largest deviation from 1 is (1 − ρ_v)^(−1/2) − 1, at t = −ρ_v (exact, not
    the mean-value bound ρ/(2(1 − ρ)^(3/2)) used before; proofs/test_bounds_forward_sharpening.py).
    Every statistic the models compute is ≥ 0 (sums of squares; one-pass clamps; Welford's
    increments δ̂·â are ≥ 0 because rounding is monotone and |fl(δ̂/j)| < |δ̂| for j ≥ 2), so
    v̂ ≥ fl(eps) ≥ eps_low := eps(1 − u) − η: ρ_r = max(sqrt(v/max(v − E_v, eps_low)) − 1,
    1 − sqrt(v/(v + E_v))), finite for every E_v when eps_low > 0 — a statistic with no
    relative accuracy left (one-pass at |μ| ≫ σ, Welford at κ ≈ 1/(k·u)) still gets a bound,
    the one the floor gives. |r̂/r − 1| ≤ ρ_R := (1 + ρ_r)(1 + α) − 1.
Eps outside (r = 1/(sqrt(stat) + eps)): |sqrt(a) − sqrt(b)| ≤ min(|a − b|/sqrt(b), sqrt|a − b|).
Where the kernel puts eps is an `EpsPlacement`: inside the root and outside it are here; the
op's own inside placement (NormSpec.eps_floor) is chosen in bounds/statistic_rules.py, which also
holds the floors that can pin the scale (the backward's B9, bounds/backward_gx.py).

Probabilistic kind: the rsqrt error α, the scale's rounding of eps and the rounding of v̂ stay
worst-case: they are single, possibly systematic errors (a hardware rsqrt may err with the same
sign on every row), which no averaging over roundings reduces — but they are measured against
their binades: the rounding of v̂ = fl(stat̂ + fl(eps)) by u·binade(v + E_stat + e_ε), half an
ulp of its result, and the rsqrt by `rsqrt_error_per_row`, RN(z) moved k ulps of z's own binade
(≈ u + 2ku relative to a binade's bottom, down to half that at its top) — still bounded, not
random, so a same-sign hardware error is covered. Adding the rounding of v̂ to the statistic's
martingale instead (λ·sqrt(S² + c²) for S + c) pays only where c < 2λS/(λ² − 1) ≈ 0.47·S and
then little: it is done for the backward's row scales (λ = 1, `scale_only`;
bounds/backward_weights.py), where it always pays, not here (proofs/test_bounds_algebra_backward.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from normtheory.formats import FloatFormat
from normtheory.precision.models import Model
from normtheory.precision.toolkit.context import BoundContext
from normtheory.precision.toolkit.rounding import binade


@dataclass(frozen=True)
class ScaleError:
    r: np.ndarray  # exact 1/scale per row
    rho_R: np.ndarray  # bound on |r̂/r − 1| per row
    rho_stat: np.ndarray  # its statistic's part ρ_r: bound on |z/r − 1|, z = 1/scalê exactly
    # a placement that can pin the scale (EpsPlacement.branches; None otherwise): rows where the
    # kernel and the exact formula both take the eps floor, and rows where they may take different branches
    floor_rows: np.ndarray | None = None
    kink_rows: np.ndarray | None = None


def rsqrt_relative_error(model: Model, u: float) -> float:
    """α: the bound on the rsqrt's own relative error |r̂/z − 1|, z = 1/scalê exactly (RN(z) moved
    `rsqrt_ulps` ulps of at most 2u relative each, then the approximate rsqrt's (1 ± rsqrt_rel)
    and its rounding; 2^-51: binary64's evaluation of z)."""
    if model.rsqrt_rel == 0:
        return (1 + u + 2.0**-51) * (1 + 2 * model.rsqrt_ulps * u) - 1
    return (1 + u + 2.0**-51) * (1 + 2 * model.rsqrt_ulps * u) * (1 + model.rsqrt_rel) * (1 + u) - 1


def rsqrt_error_per_row(model: Model, acc: FloatFormat, r: np.ndarray, rho_r: np.ndarray) -> np.ndarray:
    """α per row, ≤ rsqrt_relative_error: the rsqrt returns RN(z') moved k ulps, z' = z(1 ± 2^-52)
    and z = 1/scalê within r(1 ± ρ_r) (ρ_r: a bound on the statistic's part, |z/r − 1| ≤ ρ_r), so
    |r̂ − z| ≤ ½ulp(Z) + k·ulp(Z(1 + u)) with Z = r(1 + ρ_r)(1 + 2^-51), and relative to
    z ≥ r(1 − ρ_r) that is below the relative α wherever r is not just under a power of two (an
    ulp is relative to the binade, not to r). The same bounded error as α — not a random one —
    only measured against the row's own binade. Approximate rsqrts (rsqrt_rel > 0): α."""
    u = acc.unit_roundoff
    alpha = rsqrt_relative_error(model, u)
    rows = np.shape(r)
    if model.rsqrt_rel != 0:
        return np.full(rows, alpha)
    ok = np.isfinite(rho_r) & (rho_r < 0.5) & np.isfinite(r) & (r > 0)
    r = np.where(ok, r, 1.0)
    rho_r = np.where(ok, rho_r, 0.0)
    Z, z_lo = r * (1 + rho_r) * (1 + 2.0**-51), r * (1 - rho_r)
    per_row = (0.5 * acc.ulp(Z) + model.rsqrt_ulps * acc.ulp(Z * (1 + u))) / z_lo + 2.0**-51
    return np.where(ok, np.minimum(per_row, alpha), alpha)


# (stat, err_stat, *, ctx, eps, eps_low, scale_only) -> (r, ρ_r); (stat, err_stat, *, ctx, eps) -> (floor, kink)
PlacementBound = Callable[..., tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class EpsPlacement:
    """Where the kernel puts eps, as the bounds see it: r and ρ_r from the statistic and its error,
    and, for a floor that can pin the scale, on which rows it provably does (floor) or may (kink)."""

    scale: PlacementBound
    branches: PlacementBound | None = None


def scale_error(stat: np.ndarray, err_stat: np.ndarray, *, ctx: BoundContext, eps: float, placement: EpsPlacement,
                scale_only: bool = False) -> ScaleError:
    """(r = exact 1/scale, bound ρ_R on |r̂/r − 1|, its statistic's part ρ_r) per row (steps 3–4).

    Probabilistic kind (the worst-case bound keeps its relative forms): two single roundings are
    measured against their binades instead of u relative, both bounded, not random: the rounding
    of v̂ = fl(stat̂ + fl(eps)) errs by at most u·binade(v + E_stat + e_ε) (half an ulp of its
    result), and the rsqrt by `rsqrt_error_per_row` at the statistic's ρ_r — which holds on the
    same event as the statistic's probabilistic bound, so no failure is added.
    `scale_only`: err_stat is the statistic's sub-Gaussian scale (its λ = 1 bound) and the
    rounding of v̂ is one more increment of the same martingale (mean zero given the statistic's
    roundings, at most u·binade(…)): the two add in squares. Not a bound at any λ; for the row
    scales of the backward (P2, bounds/backward_weights.py), where every increment is weighted by
    λ = LAMBDA > 1 later. `placement`: where the kernel puts eps (statistic_rules.placement_for)."""
    model, u, eta = ctx.model, ctx.u, ctx.eta
    # v̂ ≥ fl(eps) ≥ eps_low: every statistic the models compute is ≥ 0 (sums of squares;
    # Welford's increments δ̂·â are ≥ 0 because rounding is monotone; one-pass clamps), so the
    # computed scale never falls below the rounded eps, however large the statistic's error
    eps_low = max(eps * (1 - u) - eta, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r, rho_r = placement.scale(stat, err_stat, ctx=ctx, eps=eps, eps_low=eps_low, scale_only=scale_only)
        branches = placement.branches
        floor, kink = branches(stat, err_stat, ctx=ctx, eps=eps) if branches is not None else (None, None)
    alpha = rsqrt_error_per_row(model, ctx.acc, r, rho_r) if ctx.probabilistic else rsqrt_relative_error(model, u)
    return ScaleError(r, (1 + rho_r) * (1 + alpha) - 1, rho_r, floor, kink)


def _eps_inside_root(stat: np.ndarray, err_stat: np.ndarray, *, ctx: BoundContext, eps: float, eps_low: float,
                     scale_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """r = 1/sqrt(stat + eps) and ρ_r (step 3 and the convexity of step 4)."""
    u, eta = ctx.u, ctx.eta
    v = stat + eps
    err_eps = u * eps + eta  # fl(eps) may be subnormal in the accumulator (fp16)
    rounding_v = u * binade(v + err_stat + err_eps) if ctx.probabilistic else u * (v + err_stat + err_eps)
    err_v = (np.hypot(err_stat, rounding_v) if scale_only else err_stat + rounding_v) + err_eps + eta
    low = np.maximum(v - err_v, eps_low)
    # (1 + t)^(−1/2) is convex: on |t| ≤ ρ its largest deviation from 1 is at t = −ρ
    rho_r = np.maximum(np.where(low > 0, np.sqrt(v / low), np.inf) - 1, 1 - np.sqrt(v / (v + err_v)))
    return 1 / np.sqrt(v), rho_r


def _eps_outside_root(stat: np.ndarray, err_stat: np.ndarray, *, ctx: BoundContext, eps: float, eps_low: float,
                      scale_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """r = 1/(sqrt(stat) + eps) and ρ_r: |sqrt(a) − sqrt(b)| ≤ min(|a − b|/sqrt(b), sqrt|a − b|)."""
    u, eta = ctx.u, ctx.eta
    root = np.sqrt(stat)
    err_root = np.minimum(np.where(root > 0, err_stat / root, np.inf), np.sqrt(err_stat))
    den = root + eps
    err_den = (err_root + u * root + eta + u * eps + eta) * (1 + u) + u * den + eta
    low = np.maximum(den - err_den, eps_low)
    rho_r = np.maximum(np.where(low > 0, den / low, np.inf) - 1, 1 - den / (den + err_den))
    return 1 / den, rho_r


INSIDE_ROOT = EpsPlacement(_eps_inside_root)  # sqrt(stat + eps)
OUTSIDE_ROOT = EpsPlacement(_eps_outside_root)  # sqrt(stat) + eps: models.Model.eps_mode "outside", every op
