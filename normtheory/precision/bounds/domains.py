"""Overflow and underflow domains of a model, as functions of the row width.

Overflow: the largest |x| (all entries at that magnitude, the worst case) for which no
intermediate of the model can exceed the accumulator's largest finite value F:
- sum of squares (RMSNorm, CRMSNorm, one-pass LayerNorm): Σx² ≤ n·X², and CRMSNorm adds
  (Σz)² ≤ n²·X², so n·X²·(1 + n) must stay below F (n·X² alone for the others);
- two-pass LayerNorm: Σ(x − μ)² ≤ n·(2X)² (each centred entry is below 2X);
- Welford: the lane sums of squared deviations and the merge terms δ²·na·nb/n are each at
  most (2X)²·n/4 per level, the total at most n·(2X)².
A margin of (1 + u)^m absorbs the rounding of the partial sums: a computed sum of
nonnegative terms is at most its exact value times (1 + u)^m, m the roundings on its deepest
path (`rounding_margin`, toolkit/tree.py: the square or product, the lane steps, two per merge level, the
scaling; m = h + t + 4 with h the reduction depth and t the merge levels). A fixed
1 + 2^-10 was used before; it assumed n·u ≤ 2^-10, which fp16 and bf16 accumulators break
(43 entries of 39 in fp16: Σx² = 65403 is finite, the sequential fp16 sum rounds up to inf).

Underflow and eps collapse:
- squares underflow to zero in the accumulator below sqrt(smallest subnormal) (gradual
  underflow) or sqrt(smallest normal) (FTZ): the statistic then loses those entries;
- the statistic drowns in eps when mean(x²) < u·eps: below sqrt(u·eps) the output is
  x/sqrt(eps) to working accuracy whatever x's own scale — the normalizer stops normalizing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from normtheory.formats import FORMATS
from normtheory.precision.bounds.statistic_rules import rule_for
from normtheory.precision.models import Model
from normtheory.precision.toolkit.tree import rounding_margin
from normtheory.registry import NormSpec, get_spec

__all__ = ["rounding_margin", "overflow_threshold", "spec_overflow_threshold", "square_underflow_threshold",
           "eps_collapse_threshold", "domain_table"]


def overflow_threshold(op: str, model: Model, n: int) -> float:
    """Largest |x| for which no intermediate of `model` overflows on a row of n entries."""
    return spec_overflow_threshold(get_spec(op), model, n)


def spec_overflow_threshold(spec: NormSpec, model: Model, n: int) -> float:
    """`overflow_threshold` for a parsed op (its statistic's largest intermediate: bounds/statistic_rules.py)."""
    top = FORMATS[model.acc].max_finite / rounding_margin(model, n)
    return math.sqrt(top / rule_for(spec).squares_per_x2(model, n))


def square_underflow_threshold(model: Model) -> float:
    """|x| below which x² is lost (flushed, or below half the smallest subnormal) in the accumulator."""
    fmt = FORMATS[model.acc]
    return math.sqrt(fmt.min_normal if model.ftz else fmt.min_subnormal / 2)


def eps_collapse_threshold(model: Model, eps: float) -> float:
    """RMS of x below which the statistic is below u·eps: the output is x/sqrt(eps)."""
    return math.sqrt(FORMATS[model.acc].unit_roundoff * eps)


def domain_table(op: str, model: Model, widths: Iterable[int], eps: float) -> list[dict]:
    """One row per width: the overflow threshold and the two underflow thresholds."""
    spec = get_spec(op)
    return [
        {
            "d": d,
            "overflow_abs": spec_overflow_threshold(spec, model, spec.input_width(d)),
            "square_underflow_abs": square_underflow_threshold(model),
            "eps_collapse_rms": eps_collapse_threshold(model, eps),
        }
        for d in widths
    ]
