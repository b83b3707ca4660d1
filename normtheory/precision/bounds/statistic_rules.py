"""Everything the bounds know about each registry statistic and eps floor, in one module.

The forward, backward and domain bounds take nothing op-specific from the op's name: whether
the op subtracts a mean is `NormSpec.centred`, and the rest is here: the statistic's
`StatisticRule` (its divisor is `NormSpec.statistic_divisor`: the model width for the mean
statistics, 1 for the plain sum of L2 normalisation) and the op's eps floor's `EpsPlacement`
(`placement_for`). A new statistic (registry.STATISTICS) gets its bound by one entry in RULES
(its error function, steps 1–2, its largest intermediate, and where they differ from the
defaults its backward direction), a new floor (registry.EPS_FLOORS) by one entry in
EPS_FLOORS; the statistics with a mean (two-pass, one-pass: bounds/statistics.py; Welford:
bounds/welford.py) have their own modules, the rest are below. The Lp normalizers' power mean
has its own kernel and bound (bounds/lp.py) and no entry.

Notation as in bounds/statistics.py. Steps 1–2 of the statistics without a mean:
RMSNorm: q̂ = q(1 + θ_{h+3}). L2 normalisation: the plain sum Ŝ = Σx²(1 + θ_{h+1}) termwise
(the square and h additions; no scaling, its divisor is 1). CRMSNorm: Σz with error γ_h·Σ|z|,
(Σz)² then error E₁(2|Σz| + E₁), plus γ_{h+5}(Σz² + (Σz)²)/d.

Max floor (eps inside for an op with NormSpec.eps_floor "max": r = 1/max(sqrt(stat), eps), the
kernel's scalê = max(fl(sqrt(stat̂)), fl(eps)), then r̂ = RN(1/scalê) moved as the rsqrt is):
|fl(sqrt(stat̂)) − sqrt(stat)| ≤ E_root := e_r + u(sqrt(stat) + e_r) + η (e_r the square-root
difference above) and |fl(eps) − eps| ≤ e_ε; max is 1-Lipschitz in each argument, so
|scalê − N| ≤ E_N := max(E_root, e_ε), N = max(sqrt(stat), eps), and ρ_r = max(N/max(N − E_N,
eps_low) − 1, 1 − N/(N + E_N)) — infinite where 1/max(N − E_N, eps_low) may leave the
accumulator's range (the eps floor caps r at 1/eps, which fp16 cannot hold for eps < 2^-16).
The branch (which of the two is the max) matters for the backward: `floor_branches` says on
which rows the kernel's comparison fl(sqrt(stat̂)) < fl(eps) and the exact Σx² < eps² provably
agree (floor, or the norm), and which are at the kink.
(the backward's B9, bounds/backward_gx.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from normtheory.errors import UsageError
from normtheory.precision.bounds.scale import INSIDE_ROOT, OUTSIDE_ROOT, EpsPlacement
from normtheory.precision.bounds.statistics import (
    StatisticError,
    one_pass_variance_error,
    statistic_underflow,
    two_pass_variance_error,
)
from normtheory.precision.bounds.welford import welford_variance_error
from normtheory.precision.models import Model
from normtheory.precision.toolkit.context import BoundContext
from normtheory.precision.toolkit.rounding import binade, scaled_sum_error
from normtheory.precision.toolkit.sums import positive_sum_error, probabilistic_sum_error
from normtheory.precision.toolkit.tree import rounding_margin
from normtheory.registry import NormSpec

StatisticBound = Callable[[np.ndarray, BoundContext, int], StatisticError]


def statistic_divisor(spec: NormSpec, n: int) -> int:
    """The statistic's divisor: the model width d for the mean statistics (d − 1 stored entries
    for CRMSNorm), 1 for a plain sum (registry.NormSpec.statistic_divisor)."""
    return spec.statistic_divisor(n)


@dataclass(frozen=True)
class StatisticRule:
    """One statistic's part of the bounds."""

    # steps 1–2 (x, context, divisor d) -> (Δ, the exact statistic, the bound on its error)
    error: StatisticBound
    # the largest intermediate of the model's statistic over X² on a row of n entries all at
    # |x| = X (bounds/domains.py: the overflow threshold is sqrt(F/margin/this))
    squares_per_x2: Callable[[Model, int], float]
    # rows where an intermediate may overflow, from the row's own sums (sharper than the
    # width-only threshold); None: the threshold of `squares_per_x2`
    row_overflow: Callable[[np.ndarray, BoundContext], np.ndarray] | None = None
    # the backward's direction φ (bounds/backward_gx.py): n + Σn when the statistic has a Σz² + (Σz)²
    # form (CRMSNorm), n otherwise
    direction_adds_row_sum: bool = False
    # d of the statistic Ŝ·fl(1/d) (1: a plain sum, no scaling) and of the backward's K = Σg·n/d,
    # for a row of n stored entries
    divisor: Callable[[NormSpec, int], int] = statistic_divisor


VARIANCE_ALGORITHMS: dict[str, StatisticBound] = {
    "two_pass": two_pass_variance_error,
    "welford": welford_variance_error,
    "one_pass": one_pass_variance_error,
}


def variance_error(x: np.ndarray, ctx: BoundContext, d: int) -> StatisticError:
    """LayerNorm: the model's statistics algorithm (models.STATS) decides the bound."""
    return VARIANCE_ALGORITHMS[ctx.model.stats](x, ctx, d)


def variance_squares(model: Model, n: int) -> float:
    """Two-pass: Σ(x − μ)² ≤ n·(2X)² (each centred entry is below 2X); Welford: the lane sums of
    squared deviations and the merge terms are each at most (2X)²·n/4 per level, the total at most
    n·(2X)²; one-pass: Σx² ≤ n·X²."""
    return 4.0 * n if model.stats != "one_pass" else n


def mean_square_error(x: np.ndarray, ctx: BoundContext, d: int) -> StatisticError:
    """RMSNorm: q̂ = fl(Σx²·fl(1/d)) = q(1 + θ_{h+3}); probabilistic: the sum of squares' martingale."""
    rows, n = x.shape
    h, u = ctx.model.reduction_depth(n), ctx.u
    q = (x * x).mean(axis=1)
    err = ctx.gamma(h + 3) * q
    if ctx.probabilistic:  # DAZ: of the loaded x' (see mean_error)
        loaded = ctx.loaded(x)
        err = np.minimum(err, scaled_sum_error(positive_sum_error(loaded * loaded, ctx), q * n, n, u))
    return StatisticError(np.zeros(rows), q, err + statistic_underflow(x, ctx))


def sum_square_error(x: np.ndarray, ctx: BoundContext, d: int) -> StatisticError:
    """L2 normalisation (divisor d = 1): Ŝ = Σx² as the model's tree sums the squares, each term
    through at most h + 1 roundings, |Ŝ − S| ≤ γ_{h+1}·S; probabilistic: the sum of squares'
    martingale (as `mean_square_error`'s, without the scaling). DAZ: a flushed input has
    |x| < η_in, so Σx'² differs from Σx² by at most n·η_in² (the shift of normalized.py's
    statistic_error is written for the mean statistics, whose root moves by η_in, not sqrt(n)·η_in)."""
    rows, n = x.shape
    h = ctx.model.reduction_depth(n)
    total = (x * x).sum(axis=1)
    err = ctx.gamma(h + 1) * total
    if ctx.probabilistic:  # DAZ: of the loaded x' (see mean_error)
        loaded = ctx.loaded(x)
        err = np.minimum(err, positive_sum_error(loaded * loaded, ctx))
    return StatisticError(np.zeros(rows), total, err + statistic_underflow(x, ctx) + n * ctx.eta_in**2)


def crms_error(x: np.ndarray, ctx: BoundContext, d: int) -> StatisticError:
    """CRMSNorm: Ŝ = fl(fl(ŝ1·ŝ1) + ŝ2)·fl(1/d) over the n = d − 1 stored entries."""
    rows, n = x.shape
    h, u, g = ctx.model.reduction_depth(n), ctx.u, ctx.gammas
    underflow = statistic_underflow(x, ctx)
    s1, s2 = x.sum(axis=1), (x * x).sum(axis=1)
    e1 = g(h) * np.abs(x).sum(axis=1)
    total = (s1 * s1 + s2) / d
    err = g(h + 5) * total + (1 + g(2)) * e1 * (2 * np.abs(s1) + e1) / d + underflow
    if ctx.probabilistic:
        # Ŝ = fl(fl(ŝ1·ŝ1) + ŝ2) (one rounding with FMA) from the two tree sums, each bounded
        # by its own martingale (two union events): |ŝ1² − s1²| ≤ e1(2|s1| + e1), |ŝ2 − s2| ≤
        # e2, and the product and the add each move Ŝ by at most half an ulp of their result
        # (u·binade, worst case: binade is monotone, so the bound's binade covers the value's).
        # Then fl(Ŝ·fl(1/d)) as for the other statistics. DAZ: of the loaded x' (as above).
        loaded = ctx.loaded(x)
        l1, l2 = loaded.sum(axis=1), (loaded * loaded).sum(axis=1)
        e1_prob = np.minimum(g(h) * np.abs(loaded).sum(axis=1), probabilistic_sum_error(loaded, ctx))
        e2_prob = positive_sum_error(loaded * loaded, ctx)
        inner = e1_prob * (2 * np.abs(l1) + e1_prob) + e2_prob
        product_rounding = u * binade((np.abs(l1) + e1_prob) ** 2)
        err_sum = inner + product_rounding + u * binade(l1 * l1 + l2 + inner + product_rounding)
        err = np.minimum(err, scaled_sum_error(err_sum, l1 * l1 + l2, d, u) + underflow)
    return StatisticError(np.zeros(rows), total, err)


def crms_row_overflow(x: np.ndarray, ctx: BoundContext) -> np.ndarray:
    """The row's own sums, not n·max|x| (the width-only threshold assumes all n entries at
    max|x| with one sign): a computed partial sum of x is at most M·Σ|x| and of x² at most
    M·Σx² (M the rounding margin), and ŝ1·ŝ1 + ŝ2 takes at most two more roundings."""
    acc = ctx.acc
    margin, grow = rounding_margin(ctx.model, x.shape[1]), 1 + acc.unit_roundoff
    s1_top = np.abs(x).sum(axis=1) * margin
    stat_top = (s1_top * s1_top * grow + (x * x).sum(axis=1) * margin) * grow
    return (stat_top > acc.max_finite) | (s1_top > acc.max_finite)


RULES: dict[str, StatisticRule] = {
    "variance": StatisticRule(error=variance_error, squares_per_x2=variance_squares),
    "mean_square": StatisticRule(error=mean_square_error, squares_per_x2=lambda model, n: n),
    # Σx² ≤ n·X² and (Σz)² ≤ n²·X²: n·X²·(1 + n)
    "crms": StatisticRule(error=crms_error, squares_per_x2=lambda model, n: n * (1.0 + n),
                          row_overflow=crms_row_overflow, direction_adds_row_sum=True),
    "sum_square": StatisticRule(error=sum_square_error, squares_per_x2=lambda model, n: n),
}


def _root_error(stat: np.ndarray, err_stat: np.ndarray, ctx: BoundContext) -> tuple[np.ndarray, np.ndarray]:
    """(sqrt(stat), E_root): the bound on |fl(sqrt(stat̂)) − sqrt(stat)|, the square root's
    difference min(|a − b|/sqrt(b), sqrt|a − b|) plus the rounding of the computed root."""
    root = np.sqrt(stat)
    err_root = np.minimum(np.where(root > 0, err_stat / root, np.inf), np.sqrt(err_stat))
    return root, err_root + ctx.u * (root + err_root) + ctx.eta


def _eps_max_floor(stat: np.ndarray, err_stat: np.ndarray, *, ctx: BoundContext, eps: float, eps_low: float,
                   scale_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """r = 1/max(sqrt(stat), eps) and ρ_r (module docstring). `scale_only`: the square root's
    rounding and fl(eps) are added to the statistic's scale linearly, worst-case (larger than
    adding in squares, so the backward's λ-weighted use of it stays an upper bound)."""
    root, err_root = _root_error(stat, err_stat, ctx)
    N = np.maximum(root, eps)
    err_N = np.maximum(err_root, ctx.u * eps + ctx.eta)  # max is 1-Lipschitz in each argument
    low = np.maximum(N - err_N, eps_low)
    rho_r = np.maximum(np.where(low > 0, N / low, np.inf) - 1, 1 - N / (N + err_N))
    # r̂ ≤ 1/low (moved a few ulps): where that may exceed the accumulator's range (fp16 with a
    # small eps: 1/eps > 65504) the kernel's r̂ is inf, and there is no bound
    fits = 1 / low <= ctx.acc.max_finite / 2
    return 1 / N, np.where(fits, rho_r, np.inf)


def floor_branches(stat: np.ndarray, err_stat: np.ndarray, *, ctx: BoundContext,
                   eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(floor, kink) rows of a max floor: the kernel takes the floor where fl(sqrt(stat̂)) <
    fl(eps) and the exact formula where stat < eps² (at the tie the norm: registry.py). Both
    take the floor where sqrt(stat) + E_root < eps − e_ε, both the norm where sqrt(stat) − E_root
    ≥ eps + e_ε; between them (widened by 2^-50 for binary64's own evaluation) they may differ:
    the kink, where the gradient jumps and no gradient bound holds."""
    root, err_root = _root_error(stat, err_stat, ctx)
    margin = (err_root + ctx.u * eps + ctx.eta) * (1 + 2.0**-20) + 2.0**-50 * (root + eps)
    floor = root + margin < eps
    on_norm = root - margin >= eps
    return floor, ~(floor | on_norm)


# how eps enters with eps_mode "inside" (registry.EPS_FLOORS); eps_mode "outside" is OUTSIDE_ROOT for every op
EPS_FLOORS: dict[str, EpsPlacement] = {
    "add": INSIDE_ROOT,  # sqrt(stat + eps)
    "max": EpsPlacement(_eps_max_floor, branches=floor_branches),  # max(sqrt(stat), eps)
}


def placement_for(spec: NormSpec, model: Model) -> EpsPlacement:
    """Where the model's kernel puts eps for this op: outside the root, or the op's own inside placement."""
    return OUTSIDE_ROOT if model.eps_mode == "outside" else EPS_FLOORS[spec.eps_floor]


def rule_for(spec: NormSpec) -> StatisticRule:
    """The bounds' rule for the op's statistic; UsageError (exit 2) where there is none."""
    try:
        return RULES[spec.statistic]
    except KeyError:
        raise UsageError(f"no a-priori bound for {spec.name!r} (statistic {spec.statistic!r}) in this model; "
                         f"bounded statistics: {', '.join(RULES)}") from None
