"""Overflow and underflow domains of a model, as functions of the row width.

Overflow: the largest |x| (all entries at that magnitude, the worst case) for which no
intermediate of the model can exceed the accumulator's largest finite value F:
- sum of squares (RMSNorm, CRMSNorm, one-pass LayerNorm): Σx² ≤ n·X², and CRMSNorm adds
  (Σz)² ≤ n²·X², so n·X²·(1 + n) must stay below F (n·X² alone for the others);
- two-pass LayerNorm: Σ(x − μ)² ≤ n·(2X)² (each centred entry is below 2X);
- Welford: the lane sums of squared deviations and the merge terms δ²·na·nb/n are each at
  most (2X)²·n/4 per level, the total at most n·(2X)².
A margin of (1 + 2^-10) absorbs the rounding of the partial sums (each within (1 + n·u) of
the exact partial sum; n·u ≤ 2^-10 for the widths this package bounds).

Underflow and eps collapse:
- squares underflow to zero in the accumulator below sqrt(smallest subnormal) (gradual
  underflow) or sqrt(smallest normal) (FTZ): the statistic then loses those entries;
- the statistic drowns in eps when mean(x²) < u·eps: below sqrt(u·eps) the output is
  x/sqrt(eps) to working accuracy whatever x's own scale — the normalizer stops normalizing.
"""

from __future__ import annotations

import math

from normtheory.formats import FORMATS
from normtheory.precision.models import Model

_MARGIN = 1.0 + 2.0**-10


def overflow_threshold(op: str, model: Model, n: int) -> float:
    """Largest |x| for which no intermediate of `model` overflows on a row of n entries."""
    top = FORMATS[model.acc].max_finite / _MARGIN
    if op == "crmsnorm":
        return math.sqrt(top / (n * (1.0 + n)))
    if op == "layernorm" and model.stats != "one_pass":
        return math.sqrt(top / (4.0 * n))
    return math.sqrt(top / n)


def square_underflow_threshold(model: Model) -> float:
    """|x| below which x² is lost (flushed, or below half the smallest subnormal) in the accumulator."""
    fmt = FORMATS[model.acc]
    return math.sqrt(fmt.min_normal if model.ftz else fmt.min_subnormal / 2)


def eps_collapse_threshold(model: Model, eps: float) -> float:
    """RMS of x below which the statistic is below u·eps: the output is x/sqrt(eps)."""
    return math.sqrt(FORMATS[model.acc].unit_roundoff * eps)


def domain_table(op: str, model: Model, widths, eps: float) -> list[dict]:
    """One row per width: the overflow threshold and the two underflow thresholds."""
    return [
        {
            "d": d,
            "overflow_abs": overflow_threshold(op, model, d - 1 if op == "crmsnorm" else d),
            "square_underflow_abs": square_underflow_threshold(model),
            "eps_collapse_rms": eps_collapse_threshold(model, eps),
        }
        for d in widths
    ]
