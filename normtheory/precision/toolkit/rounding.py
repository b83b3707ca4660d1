"""One rounding, and products of roundings: the facts every bound is built from.

Notation: u = unit roundoff of the format a result is rounded in; η = the absolute error of one
rounding at the bottom of the range (half the smallest subnormal; the smallest normal under FTZ,
where a result below it is flushed to zero).
- γ_k = k·u/(1 − k·u) (Higham, ASNA §3.1: the product of k factors (1 + δ), |δ| ≤ u, is
  1 + θ_k with |θ_k| ≤ γ_k).
- Probabilistic form (Higham and Mary 2019). Assumption: each rounding's relative error has mean
  zero given all earlier ones and is at most u in size; the data are fixed. Every γ_k is replaced
  by γ̃_k(λ) = exp(λ·sqrt(k)·u + k·u²/(1 − u)) − 1 (their Thm 2.8: fails with probability
  ≤ 2·exp(−λ²(1 − u)²/2)). λ = LAMBDA = 4.5: every such statement fails with probability
  < 9·10⁻⁵ (bounds/forward.py counts how many an element's bound uses).
- Half an ulp: a rounding to nearest of w with |w| ≤ m errs by at most u·binade(m), half an ulp
  of w — not u·|w|, which is up to twice as large (Hallman and Ipsen 2023 call such bounds
  precision-aware).
- The scaling by fl(1/d): fl(Ŝ·fl(1/d)) rounds twice (γ₂), and not at all when d is a power of
  two: then fl(1/d) and the product are exact (an underflowing product is covered by the η terms).

SAFETY = 1 + 2^-20 multiplies every bound: the bound itself and the row statistics it uses are
evaluated in binary64, with relative error far below 2^-20 for n ≤ 2^24.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from normtheory.formats import FloatFormat

SAFETY = 1.0 + 2.0**-20
LAMBDA = 4.5
KINDS = ("worst", "probabilistic")
# An exact quantity (a mean, a dot product of exact values) evaluated in binary64 is widened by
# F64_SLOP times the sum of the magnitudes it came from: that covers binary64's own rounding for
# n, R ≤ 2^20 terms.
F64_SLOP = 2.0**-50
# Headroom below the largest finite value for the intermediates of the backward and Lp bounds,
# whose overflow tests already carry the γ factor of their own roundings.
HEADROOM = 1.0 + 2.0**-10


class Gammas:
    """γ_k (worst case) or γ̃_k(λ) (probabilistic) for one unit roundoff."""

    def __init__(self, u: float, kind: str, lam: float = LAMBDA):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        # λ travels with the γ's so that every probabilistic form of one evaluation uses the same
        # λ (bounds/backward_weights.py evaluates the forward forms at λ = 1 to get scales)
        self.u, self.kind, self.lam = u, kind, lam

    def __call__(self, k: float) -> float:
        k = float(k)
        if self.kind == "worst":
            return k * self.u / (1.0 - k * self.u) if k * self.u < 1 else math.inf
        return math.expm1(self.lam * math.sqrt(k) * self.u + k * self.u**2 / (1.0 - self.u))


def binade(magnitude: ArrayLike) -> np.ndarray:
    """2^⌊log2 m⌋ (0 at m = 0): a rounding to nearest of w with |w| ≤ m errs by at most u·binade(m),
    half an ulp of w — not u·|w|, which is up to twice as large (Hallman and Ipsen 2023 call such
    bounds precision-aware). An infinite m (no bound on w, e.g. a drift γ_h·a with h·u ≥ 1) gives
    inf and NaN gives NaN: no bound on the rounding either."""
    magnitude = np.asarray(magnitude, dtype=np.float64)
    finite = np.isfinite(magnitude)
    exponent = np.floor(np.log2(np.where(finite & (magnitude > 0), magnitude, 1.0)))
    powers = np.where(magnitude > 0, np.ldexp(1.0, exponent.astype(int)), 0.0)
    return np.where(finite, powers, np.abs(magnitude))


def half_ulp(fmt: FloatFormat, magnitude: np.ndarray) -> np.ndarray:
    """Half an ulp of `fmt` at each magnitude, inf where the magnitude is not finite: the error of
    one rounding to nearest of a result of at most that size, the subnormal range included (there
    it is η, where u·binade is smaller and η is counted apart)."""
    finite = np.isfinite(magnitude)
    return np.where(finite, 0.5 * fmt.ulp(np.where(finite, magnitude, 0.0)), np.inf)


def underflow_error(fmt: FloatFormat, *, ftz: bool) -> float:
    """η: the absolute error of one rounding at the bottom of the range (half the smallest
    subnormal; under FTZ a result below the smallest normal is flushed: up to that much)."""
    return fmt.min_normal if ftz else fmt.min_subnormal / 2


def scaling_gamma(d: int, u: float) -> float:
    """γ₂ for the two roundings of fl(Ŝ·fl(1/d)), none when d is a power of two: then fl(1/d) and
    the product are exact (an underflowing product is covered by the η terms)."""
    return 0.0 if d & (d - 1) == 0 else Gammas(u, "worst")(2)


def scaled_sum_error(err_sum: np.ndarray, total: np.ndarray, d: int, u: float) -> np.ndarray:
    """Error of fl(Ŝ·fl(1/d)) given |Ŝ − S| ≤ err_sum, S = total ≥ 0 (two worst-case roundings)."""
    gamma2 = scaling_gamma(d, u)
    return ((1 + gamma2) * err_sum + gamma2 * total) / d
