"""Where the naive and the stable Lp kernels overflow or underflow, predicted from the formats.

Naive kernel (kernels/lp.py): τ_i = |x_i|^p, S = Στ_i, t = S/d + eps^(p/2), N = t^(1/p),
everything stored in the accumulator A (largest finite F, half the smallest subnormal η).
- Overflow: S is stored in A, so the kernel overflows when Σ|x_i|^p > F (up to the rounding
  of the terms and partial sums, a relative (d + 2)·u_A of S: `OVERFLOW_MARGIN`). Then N = inf and
  y = x/inf = 0: silent zeros, not infs. In terms of the row: ‖x‖_p,sum = (Σ|x_i|^p)^(1/p) >
  F^(1/p). For a row whose entries all have magnitude X (the worst case at a given max|x|):
  X > (F/d)^(1/p). For a row c·x̂ of direction x̂: c > F^(1/p)/‖x̂‖_p,sum.
  The input format caps this: when (F_A/d)^(1/p) exceeds the input's largest finite value, the
  naive kernel never overflows on that format (fp16 data, fp32 accumulation, p ≤ 7).
- Underflow: a term is lost (rounds to 0) when |x_i|^p ≤ η, i.e. |x_i| ≤ η^(1/p); it is
  subnormal, with only absolute accuracy η, below min_normal^(1/p). The floor eps^(p/2) is
  itself rounded to A and is lost when eps^(p/2) ≤ η, i.e. p ≥ 2·ln η / ln eps
  (p ≈ 12.5 for eps = 1e-6 in fp32, p ≈ 2.5 in fp16). If the floor is lost and every term
  is lost (max|x| ≤ η^(1/p)), t = 0 and y = x/0: inf, or NaN on a zero row.
- Eps collapse (a property of the formula, both kernels): when mean|x|^p < u_A·eps^(p/2),
  i.e. the power mean M_p = (mean|x|^p)^(1/p) < u_A^(1/p)·√eps, t rounds to the floor and
  the output is x/√eps: the normalizer stops normalizing. Not a failure — it is what eps is for.
Stable kernel: every |x_i/K| ≤ 1 with K = max(max|x|, √eps), the sum lies in [1, d] or the
floor is 1, so it neither overflows nor loses t for any finite x in any input format whose
values A holds exactly (d < 2^24 so that d and S ≤ d stay far from A's overflow). Its safe
range is the input format's whole finite range; only outputs that are themselves
subnormal in the output format lose relative accuracy (y_i = x_i/N is tiny when
|x_i| ≪ max|x|), which is rounding of the exact result, not a kernel failure.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from normtheory.formats import FORMATS, FloatFormat


def _fmt(fmt) -> FloatFormat:
    return FORMATS[fmt] if isinstance(fmt, str) else fmt


def overflow_margin(d: int, acc) -> float:
    """Relative uncertainty of the computed Σ|x|^p: (d + 2)·u (pow, the d − 1 additions, slack)."""
    return (d + 2) * _fmt(acc).unit_roundoff


def naive_overflow_abs(p: float, d: int, acc="fp32") -> float:
    """Largest X such that a row of d entries of magnitude X keeps Σ|x|^p ≤ F (inf for p = inf)."""
    if math.isinf(p):
        return math.inf  # no power is formed: x / max(max|x|, √eps)
    return math.exp((math.log(_fmt(acc).max_finite) - math.log(d)) / p)


def log2_power_sum(x, p: float) -> np.ndarray:
    """log2 Σ|x_i|^p per row, evaluated without overflow (scaled by the row maximum)."""
    x = np.atleast_2d(np.abs(np.asarray(x, dtype=np.float64)))
    top = x.max(axis=1)
    safe_top = np.where(top > 0, top, 1.0)
    with np.errstate(divide="ignore", under="ignore"):
        scaled_sum = ((x / safe_top[:, None]) ** p).sum(axis=1)  # in [1, d]: no overflow
        return np.where(top > 0, p * np.log2(safe_top) + np.log2(scaled_sum), -np.inf)


def naive_overflow_prediction(x, p: float, acc="fp32") -> np.ndarray:
    """Per row: +1 the naive kernel's sum overflows, −1 it does not, 0 too close to call."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if math.isinf(p):
        return -np.ones(x.shape[0], dtype=int)
    margin = overflow_margin(x.shape[1], acc)
    excess = log2_power_sum(x, p) - math.log2(_fmt(acc).max_finite)
    band = math.log2(1 + margin) + 2.0**-40
    return np.where(excess > band, 1, np.where(excess < -band, -1, 0))


def term_underflow_abs(p: float, acc="fp32") -> float:
    """|x| at or below which |x|^p rounds to zero in the accumulator."""
    return 0.0 if math.isinf(p) else _fmt(acc).min_subnormal ** (1 / p) * 2 ** (-1 / p)


def term_subnormal_abs(p: float, acc="fp32") -> float:
    """|x| below which |x|^p is subnormal in the accumulator (absolute accuracy only)."""
    return 0.0 if math.isinf(p) else _fmt(acc).min_normal ** (1 / p)


def floor_is_lost(p: float, eps: float, acc="fp32") -> bool:
    """True when eps^(p/2), rounded to the accumulator, is 0 (p = inf has no such floor)."""
    if math.isinf(p) or eps == 0:
        return eps == 0
    return float(_fmt(acc).round_to_float64(eps ** (p / 2))) == 0.0


def floor_lost_from_p(eps: float, acc="fp32") -> float:
    """The p above which the naive kernel's floor eps^(p/2) underflows to 0 (inf when eps ≥ 1)."""
    if eps <= 0:
        return 1.0
    if eps >= 1:
        return math.inf
    return 2 * math.log(_fmt(acc).min_subnormal / 2) / math.log(eps)


def eps_collapse_power_mean(p: float, eps: float, acc="fp32") -> float:
    """Power mean M_p below which t rounds to the floor: the output is x/√eps (both kernels)."""
    u = _fmt(acc).unit_roundoff
    return math.sqrt(eps) * (1.0 if math.isinf(p) else u ** (1 / p))


@dataclass(frozen=True)
class SafeRange:
    """Row magnitudes max|x| (a row of equal magnitudes: the worst case) a kernel handles."""

    kernel: str
    low: float  # below: t = 0 and y = x/0 (0 when the floor or the kernel rules this out)
    high: float  # above: Σ|x|^p overflows and y = 0 (the input format's max when it cannot)
    whole_range: bool  # [smallest subnormal, largest finite] of the input format

    def as_dict(self) -> dict:
        return asdict(self)


def naive_safe_range(p: float, d: int, eps: float, fmt, acc="fp32") -> SafeRange:
    fmt = _fmt(fmt)
    high = min(naive_overflow_abs(p, d, acc), fmt.max_finite)
    low = term_underflow_abs(p, acc) if floor_is_lost(p, eps, acc) else 0.0
    whole = high >= fmt.max_finite and low < fmt.min_subnormal
    if whole and naive_overflow_abs(p, d, acc) == fmt.max_finite:
        whole = False  # exactly at the edge: the rounding margin decides
    return SafeRange("naive", low, high, whole)


def stable_safe_range(p: float, d: int, eps: float, fmt) -> SafeRange:
    fmt = _fmt(fmt)
    low = fmt.min_subnormal if eps == 0 else 0.0  # eps = 0: a zero row is 0/0 = NaN (exactly, too)
    return SafeRange("stable", low, fmt.max_finite, True)


def naive_failures(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per row: the kernel's output is non-finite, or all zero on a row that is not (overflow's
    silent zeros) — what an overflowed or underflowed sum produces."""
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    silent_zero = (y == 0).all(axis=1) & (x != 0).any(axis=1)
    return ~np.isfinite(y).all(axis=1) | silent_zero
