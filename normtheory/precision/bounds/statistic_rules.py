"""Everything the bounds know about one statistic (registry.STATISTICS), in one table.

The forward, backward and domain bounds take nothing op-specific from the op's name: whether
the op subtracts a mean is `NormSpec.centred`, and the rest is the statistic's `StatisticRule`
here (its divisor is `NormSpec.statistic_divisor`: the model width for the mean statistics, 1
for the plain sum of L2 normalisation). A new statistic (registry.STATISTICS) gets its bound by
one entry in RULES (its error function, steps 1–2, its largest intermediate, and where they
differ from the defaults its backward direction); where the kernel puts eps is
`models.Model.eps_mode` with the op's `NormSpec.eps_floor` (bounds/scale.EPS_PLACEMENTS).
The Lp normalizers' power mean has its own kernel and bound (bounds/lp.py) and no entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from normtheory.errors import UsageError
from normtheory.precision.bounds.statistics import (
    StatisticError,
    crms_error,
    mean_square_error,
    one_pass_variance_error,
    sum_square_error,
    two_pass_variance_error,
)
from normtheory.precision.bounds.welford import welford_variance_error
from normtheory.precision.models import Model
from normtheory.precision.toolkit.context import BoundContext
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


def rule_for(spec: NormSpec) -> StatisticRule:
    """The bounds' rule for the op's statistic; UsageError (exit 2) where there is none."""
    try:
        return RULES[spec.statistic]
    except KeyError:
        raise UsageError(f"no a-priori bound for {spec.name!r} (statistic {spec.statistic!r}) in this model; "
                         f"bounded statistics: {', '.join(RULES)}") from None
