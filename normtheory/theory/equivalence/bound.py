"""From Monte Carlo rounding-error samples to a bound on the difference of two runs.

Both runs compute the same exact function f. To first order each run's error is a linear map
of many independent rounding errors (equivalence/noise.py), hence close to a Gaussian vector,
and the two runs' errors are independent, so their difference D has

    E‖D‖² = S_a + S_b,   S = E‖error of one run‖²,

estimated by Ŝ = (1/R) Σ_r ‖δ_r‖² from R error-model samples.

Two statistical steps, each allowed a failure probability of 1e-6 per compared tensor:
* For a Gaussian vector, ‖D‖² is a quadratic form Σ λ_i Z_i²; for thresholds above ≈1.54 its
  upper tail at a fixed mean is largest when one λ carries everything (Székely & Bakirov 2003,
  "Extremal probabilities for Gaussian quadratic forms"). So P(‖D‖² > t² E‖D‖²) ≤ P(χ²₁ > t²).
* Ŝ can under-estimate S. Taking again the worst case of a single direction, R Ŝ / S ~ χ²_R,
  and S ≤ Ŝ R / χ²_R(α) with probability 1 − α.

bound = t · sqrt((Ŝ_a + Ŝ_b) · R / χ²_R(α)). Nothing in it is fitted to the differences it judges.
"""

from __future__ import annotations

import functools

import mpmath

FAILURE_PROBABILITY = 1e-6


@functools.cache
def gaussian_norm_factor(beta: float = FAILURE_PROBABILITY) -> float:
    """t with P(χ²₁ > t²) = P(|Z| > t) = β."""
    return float(mpmath.sqrt(2) * mpmath.erfinv(1 - mpmath.mpf(beta)))


@functools.cache
def chi2_lower_quantile(dof: int, alpha: float = FAILURE_PROBABILITY) -> float:
    """x with P(χ²_dof ≤ x) = α (regularised lower incomplete gamma, solved by bisection)."""
    k = mpmath.mpf(dof) / 2

    def cdf(x):
        return mpmath.gammainc(k, 0, x / 2, regularized=True)

    lo, hi = mpmath.mpf(0), mpmath.mpf(dof)
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < alpha else (lo, mid)
    return float(hi)


def tail_factor(samples: int) -> float:
    """The factor multiplying sqrt(Ŝ_a + Ŝ_b) in the bound, for R = samples."""
    return gaussian_norm_factor() * (samples / chi2_lower_quantile(samples)) ** 0.5
