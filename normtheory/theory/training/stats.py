"""Across-seed statistics: t intervals, the judging rule and the minimum detectable effect.

Every claim is a *paired, signed effect*: one number per seed, defined so that the source paper
predicts it to be positive (for example LNS's late-layer removal cost minus Pre-LN's, the same
seed giving both runs the same initial weights and the same batches). Across seeds:

    interval   mean ± t_{1−α/2, n−1} · sd/√n              (two-sided, level 1 − α)
    HOLDS        the whole interval is above 0
    REFUTED      the whole interval is below 0            (the opposite of the paper, resolved)
    INCONCLUSIVE the interval contains 0 (or n < 2)

α is the probe's family level divided by its number of judged claims (Bonferroni), so all of a
probe's verdicts hold together at the family level. The t interval assumes the per-seed effects
are roughly normal; with 4–5 seeds that assumption cannot be checked, which docs/trained_claims.md
says next to each result.

Minimum detectable effect: the true mean effect that this n and this seed-to-seed spread would
resolve (interval excluding 0) with probability `power`, ≈ (t_{1−α/2} + t_{power}) · sd/√n.
An INCONCLUSIVE verdict says that an effect of at least that size is unlikely, not that there is
no effect.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import mpmath

VERDICTS = ("HOLDS", "REFUTED", "INCONCLUSIVE")


@lru_cache(maxsize=1024)
def t_quantile(prob: float, dof: int) -> float:
    """The prob-quantile of Student's t with `dof` degrees of freedom, 0.5 < prob < 1.

    Bisection on the CDF, which for t > 0 is 1 − I_x(dof/2, 1/2)/2 with x = dof/(dof + t²)
    (I the regularised incomplete beta function, evaluated by mpmath)."""
    if not 0.5 < prob < 1.0 or dof < 1:
        raise ValueError(f"need 0.5 < prob < 1 and dof >= 1, got prob={prob}, dof={dof}")

    def upper_tail(t: float) -> float:
        x = dof / (dof + t * t)
        return float(mpmath.betainc(dof / 2.0, 0.5, 0, x, regularized=True)) / 2

    target = 1.0 - prob
    low, high = 0.0, 1.0
    while upper_tail(high) > target:
        low, high = high, 2 * high
    for _ in range(100):  # 100 halvings of an interval of width <= high: far below double spacing
        mid = 0.5 * (low + high)
        if upper_tail(mid) > target:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


@dataclass(frozen=True)
class Interval:
    n: int
    mean: float
    sd: float
    low: float
    high: float
    alpha: float  # two-sided: the interval has level 1 − alpha
    mde: float  # minimum detectable effect at this n, sd, alpha and power 0.8

    def as_dict(self) -> dict:
        return asdict(self)


def mean_interval(values, *, alpha: float, power: float = 0.8) -> Interval:
    """t interval of the mean of `values` (non-finite values dropped; n counts the rest)."""
    finite = [float(v) for v in values if math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return Interval(n=0, mean=math.nan, sd=math.nan, low=-math.inf, high=math.inf, alpha=alpha, mde=math.inf)
    mean = sum(finite) / n
    if n < 2:
        return Interval(n=n, mean=mean, sd=math.nan, low=-math.inf, high=math.inf, alpha=alpha, mde=math.inf)
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    t_crit = t_quantile(1 - alpha / 2, n - 1)
    half_width = t_crit * sd / math.sqrt(n)
    mde = (t_crit + t_quantile(power, n - 1)) * sd / math.sqrt(n)
    return Interval(n=n, mean=mean, sd=sd, low=mean - half_width, high=mean + half_width, alpha=alpha, mde=mde)


def judge(interval: Interval) -> str:
    """HOLDS / REFUTED / INCONCLUSIVE for an effect the source predicts to be positive."""
    if interval.n >= 2 and interval.low > 0:
        return "HOLDS"
    if interval.n >= 2 and interval.high < 0:
        return "REFUTED"
    return "INCONCLUSIVE"
