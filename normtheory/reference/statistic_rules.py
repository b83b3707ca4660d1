"""What the reference knows about each registry statistic and eps floor, in one module.

The reference evaluates a row twice over: exactly, over a ring (arb balls or exact surds,
formulas.RowMath), and in float64 with a rigorous bound (`row_stats`, for the fast path). Beyond
NormSpec's flags (centred, drops_last_coordinate, takes_p), what differs between ops is here:
- the statistic under the root (registry.STATISTICS): EXACT_STATISTICS gives it over the ring
  from the row's values (centred for LayerNorm) and the divisor; FLOAT64_SQUARE_SUMS adds what a
  statistic has beyond the row's sum of squares (CRMSNorm's (Σz)²) to the float64 sum and bound;
- how eps enters with eps_mode "inside" (registry.EPS_FLOORS): EXACT_FLOORS gives N and ρ over
  the ring (a floor that pins N makes ρ = 0: N does not move with x there), FLOAT64_FLOORS the
  row statistics with their bounds. eps_mode "outside" (N = root + eps) is the same for every op.
A new statistic or floor is one entry in each table. The Lp normalizers' power mean (takes_p)
has its own evaluation (formulas.RowMath._lp_normalizer, fastpath.lp_stats) and no entry.
The formulas and their derivations are in formulas.py (exact) and fastpath.py (float64 bounds).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np

from normtheory.reference.fastpath import (
    SAFETY,
    TINY,
    RowStats,
    U,
    centre,
    finish_rms_family,
    lp_stats,
    pairwise_sum,
    relative,
    tree_sum,
)
from normtheory.registry import NormParams


def ring_sum(R, values):
    """Σ values over the ring R, left to right (exact, or a ball containing the sum)."""
    total = R.zero
    for v in values:
        total = total + v
    return total


# ---- the statistic over the ring ---------------------------------------------------------
def _exact_sum_of_squares(R, X, c, divisor: int):
    """Σc²/divisor: LayerNorm's variance (c centred), RMSNorm's mean square, L2's plain sum (divisor 1)."""
    total = ring_sum(R, [ci * ci for ci in c])
    return total if divisor == 1 else total / divisor


def _exact_crms(R, X, c, divisor: int):
    """(Σz² + (Σz)²)/d over the d − 1 stored coordinates z (the dropped one is −Σz)."""
    total = ring_sum(R, X)
    return (ring_sum(R, [xi * xi for xi in X]) + total * total) / divisor


# (ring, row values, centred row values, divisor) -> the statistic under the root
EXACT_STATISTICS: dict[str, Callable] = {
    "variance": _exact_sum_of_squares,
    "mean_square": _exact_sum_of_squares,
    "crms": _exact_crms,
    "sum_square": _exact_sum_of_squares,
}


# ---- eps inside, over the ring: (ring, float64 row, s, eps, p) -> (N, ρ) --------------------
def _exact_add_floor(R, x: np.ndarray, s, eps: float, p_eff: float):
    """N = (s + eps^(p/2))^(1/p): eps under the root (sqrt(s + eps) for p = 2); ρ = 1."""
    floor = R.const(eps) if p_eff == 2.0 else R.eps_pow(eps, p_eff)
    return R.root(s + floor, p_eff), R.one


def _exact_max_floor(R, x: np.ndarray, s, eps: float, p_eff: float):
    """N = max(sqrt(s), eps); the floor is active where Σx² < eps², decided exactly in rationals
    (at the tie the gradient goes through the norm, as torch's clamp_min passes it there), and
    there N does not move with x: ρ = 0."""
    square_sum = sum((Fraction(float(v)) ** 2 for v in x), Fraction(0))
    if square_sum < Fraction(eps) ** 2:
        return R.const(eps), R.zero
    return R.sqrt(s), R.one


EXACT_FLOORS: dict[str, Callable] = {"add": _exact_add_floor, "max": _exact_max_floor}


# ---- float64 with bounds --------------------------------------------------------------------
def _float64_crms_terms(c: np.ndarray, ss: np.ndarray, ss_err: np.ndarray):
    """Σz² + (Σz)², the square of an error-free (TwoSum) Σz added with its bound."""
    hi, lo, err = tree_sum(c)
    total = hi + lo
    total_err = err + U * np.abs(total)
    square = total * total
    ss_err = ss_err + total_err * (2 * np.abs(total) + total_err) + U * square
    ss = ss + square
    return ss, ss_err + U * ss


def _no_extra_terms(c: np.ndarray, ss: np.ndarray, ss_err: np.ndarray):
    return ss, ss_err


# (row values, their Σc², its bound) -> the statistic's sum before the divisor, with its bound
FLOAT64_SQUARE_SUMS: dict[str, Callable] = {
    "variance": _no_extra_terms,
    "mean_square": _no_extra_terms,
    "crms": _float64_crms_terms,
    "sum_square": _no_extra_terms,
}


def _float64_add_floor(params, c, c_err, ss, ss_err, divisor: int, degenerate) -> RowStats:
    """s = Σ/divisor, then N = sqrt(s + eps) (or sqrt(s) + eps outside), r = 1/N and ρ."""
    s = ss / divisor
    s_err = (ss_err / divisor + U * s) * SAFETY
    return finish_rms_family(params, c, c_err, s, s_err, degenerate)


def _float64_max_floor(params, x, c_err, s, s_err, divisor: int, degenerate) -> RowStats:
    """N = max(sqrt(s), eps) from the plain sum s = Σx² (divisor 1) with its bound: ρ = 0 where
    the floor is active (Σx² < eps², gx = g/eps), 1 elsewhere. The branch is taken only where the
    float64 bounds decide it: s ± s_err against eps² (eps² rounded, relative u, and not where it
    may have lost bits to float64's subnormals); the other rows get an infinite bound and go to
    the slow path, which decides the branch exactly (`_exact_max_floor`)."""
    if divisor != 1:
        raise ValueError("the max floor is defined on a plain sum (divisor 1)")
    s_err = s_err * SAFETY
    eps = params.eps
    eps_sq = eps * eps
    margin = 2 * U * eps_sq + (TINY if eps_sq < 2.0**-1000 else 0.0)
    floor = s + s_err < eps_sq - margin
    root = ~floor & (s - s_err >= eps_sq + margin)
    with np.errstate(divide="ignore", invalid="ignore"):
        N = np.where(floor, eps, np.sqrt(s))  # eps is exact; sqrt is correctly rounded
        N_rel = np.where(floor, 0.0, np.where(root, relative(s_err, s) / 2 + U, np.inf))
        r = 1.0 / N
    rho = np.where(floor, 0.0, 1.0)
    r_rel = (N_rel + U) * SAFETY
    return RowStats(x, np.zeros((1, 1)), r[:, None], r_rel[:, None], rho[:, None], np.zeros((x.shape[0], 1)),
                    degenerate)


# (params, row values, their bound, Σ, its bound, divisor, degenerate rows) -> RowStats
FLOAT64_FLOORS: dict[str, Callable] = {"add": _float64_add_floor, "max": _float64_max_floor}


def row_stats(params: NormParams, x: np.ndarray, d: int) -> RowStats:
    """The float64 row statistics (centred values, 1/N, ρ) with relative bounds (fastpath.py)."""
    spec = params.spec
    n = x.shape[1]
    if spec.centred:
        degenerate = np.all(x == x[:, :1], axis=1)
        c, c_err = centre(x, d)
        c[degenerate] = 0.0  # exact: a constant row is its own mean
        c_err[degenerate] = 0.0
    else:
        degenerate = np.all(x == 0, axis=1)
        c, c_err = x, np.zeros((1, 1))
    if spec.takes_p:
        return lp_stats(params, c, d, degenerate)
    ss, levels = pairwise_sum(c * c)
    ss_err = (c_err * (2 * np.abs(c) + c_err)).sum(axis=1) * (1 + (n + 1) * U) + (levels + 1) * U * ss
    ss, ss_err = FLOAT64_SQUARE_SUMS[spec.statistic](c, ss, ss_err)
    floor = FLOAT64_FLOORS[spec.eps_floor] if params.eps_mode == "inside" else _float64_add_floor
    return floor(params, c, c_err, ss, ss_err, spec.statistic_divisor(n), degenerate)
