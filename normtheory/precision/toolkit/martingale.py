"""The Azuma–Hoeffding statement and its verified stopping level: the one martingale bound.

Model (Higham and Mary 2019; toolkit/rounding.py): every rounding error e_k is mean zero given
the errors before it, and bounded, |e_k| ≤ c_k. Then M_K = Σ_k e_k is a martingale and the
maximal Azuma–Hoeffding inequality gives

    P(max_k |M_k| ≥ λ·sqrt(Σ_k c_k²)) ≤ 2·exp(−λ²/2)          (`azuma_radius`).

The c_k of a rounding error is half an ulp of the result it rounds, and that result depends on
the errors before it (a computed partial sum drifts from the exact one by the error of what was
summed below it). Stopping the martingale at the first index where |M_k| exceeds a level B
keeps every drift below what B allows, so the increments are bounded by c_k(B), nondecreasing
in B; if B ≥ λ·sqrt(Σ c_k(B)²), the stopped martingale exceeds B with probability at most
2·exp(−λ²/2), and so does the unstopped one (they agree until the stopping time). Any such B
bounds max|M|: `stopping_level` finds one and checks it numerically (`radius_at(B) ≤ B`),
returning inf where the check fails, so no returned level rests on an unverified iteration.

Two searches find such a B, both verified at the end:
- from below (`start=None`): B_{i+1} = max(B_i, radius(B_i)) from 0, then widened by 2^-8 so that
  a level just below the least fixed point becomes one above it (toolkit/sums.py, computed terms);
- from above (`start` = a B known to satisfy the inequality in exact arithmetic): B_{i+1} =
  radius(B_i). radius is monotone, so every iterate again satisfies it and none is larger than
  the one before; the check catches a start that binary64 evaluated just too small (toolkit/sums.py,
  a chain of exact terms, where the closed form E₀ = λu‖s‖/(1 − λu√K) is such a start).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FIXED_POINT_ITERATIONS = 8  # two left the chain's bound ≈ 2% above the fixed point on 256-term bf16 sums
WIDEN = 1 + 2.0**-8  # the upward search's last step: from just below a fixed point to above it


def azuma_radius(sum_of_squares: np.ndarray, lam: float) -> np.ndarray:
    """λ·sqrt(Σ c_k²): |M| stays below it except with probability 2·exp(−λ²/2)."""
    return lam * np.sqrt(sum_of_squares)


def stopping_level(radius_at: Callable[[np.ndarray], np.ndarray], *, rows: int,
                   start: np.ndarray | None = None) -> np.ndarray:
    """Per row a level B with B ≥ radius_at(B), checked; inf where none was verified.

    `radius_at(B)` is λ·sqrt(Σ c_k(B)²) for the martingale stopped at level B (nondecreasing in B).
    Without `start` the search runs upward from 0 and widens its result by 2^-8; with `start` (a
    level that satisfies the inequality in exact arithmetic) it runs downward from there.
    """
    if start is None:
        level = np.zeros(rows)
        for _ in range(FIXED_POINT_ITERATIONS):
            level = np.maximum(level, radius_at(level))
        level = level * WIDEN
    else:
        level = start
        for _ in range(FIXED_POINT_ITERATIONS):
            level = radius_at(level)
    verified = radius_at(level) <= level
    return np.where(verified & np.isfinite(level), level, np.inf)
