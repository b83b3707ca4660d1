"""Vectorized float64 evaluation of the normalizers with a rigorous error bound per element.

Per row it computes the statistics (centred values, 1/N, ρ) with relative error bounds (what
differs between statistics and eps floors: reference/statistic_rules.py, which also holds the
per-row dispatch `row_stats`); the
forward elements and their bounds are then formed in the compiled kernel in decide.py, and
gx here. Every output comes as an approximation ŷ and a bound E with |ŷ − y| ≤ E, y the
exact real result. The caller rounds ŷ − E and ŷ + E to the target format:
where both round to the same bits, that is the correctly rounded result (rounding is
monotone); elsewhere the element goes to the slow path (arb balls, then exact arithmetic).

How the bounds are derived (u = 2^-53, binary64 round-to-nearest, no FMA contraction in
numpy, no overflow or underflow to subnormals for inputs of at most 32 bits):
- a sum of m terms in any order has error ≤ (m−1)·u·Σ|terms| (Higham, Thm 4.1 bound γ_{m−1},
  first order); we use (m+1)·u to absorb the rounding of each term.
- sums whose bound matters are explicit pairwise trees: error ≤ ⌈log2 n⌉·u·Σ|terms|.
- LayerNorm centres around a pivot (see `centre`): the centred values carry an error
  ≈ u·|c| + log2(n)·u·mean|x − μ|, never n·u·|μ|, so |mean|/std up to 1e8 stays decidable.
- CRMSNorm's Σz and gb = Σ gy use an error-free TwoSum tree (hi + lo, error ≈ u² relative).
- every other operation adds u·|result| (sqrt is correctly rounded in IEEE 754; pow, used
  only by the Lp normalizer, is assumed within 1 ulp as glibc documents, and its bound
  carries 2u).
- first-order products of relative errors are absorbed by SAFETY = 1 + 2^-20: every bound
  is a sum of terms each ≥ u·|something|, and the neglected second-order terms are at most
  (n+8)·u times those (≤ 1e-9 for n ≤ 2^24).
Rows whose statistic is exactly 0 with eps = 0 (0/0) are NaN rows, handled by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from normtheory.registry import NormParams

U = 2.0**-53
SAFETY = 1.0 + 2.0**-20
TINY = 2.0**-1060  # absolute slack for results that may land in float64's subnormal range (Lp)


# ---- error-free transformations --------------------------------------------------------
def two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def tree_sum(values: np.ndarray, axis: int = 1):
    """Σ along `axis` as hi + lo with a bound on |Σ − (hi + lo)| (pairwise TwoSum tree)."""
    level = np.moveaxis(values, axis, -1)
    m = level.shape[-1]
    lo = np.zeros(level.shape[:-1])
    abs_errors = np.zeros(level.shape[:-1])
    while level.shape[-1] > 1:
        if level.shape[-1] % 2:
            level = np.concatenate([level, np.zeros(level.shape[:-1] + (1,))], axis=-1)
        level, err = two_sum(level[..., 0::2], level[..., 1::2])
        lo += err.sum(axis=-1)
        abs_errors += np.abs(err).sum(axis=-1)
    hi = level[..., 0] if m else np.zeros(level.shape[:-1])
    return hi, lo, (m + 2) * U * abs_errors * SAFETY


def pairwise_sum(values: np.ndarray):
    """Row sums (axis 1) by an explicit pairwise tree; returns (sums, levels).

    Every term passes through `levels` = ⌈log2 n⌉ additions, so the error is at most
    levels·u·Σ|values| (Higham §4.2) — for n = 4096, 12u instead of recursive summation's 4095u.
    numpy's own sum is not used where the bound matters: its order is an implementation detail.
    """
    level = values
    levels = 0
    while level.shape[1] > 1:
        if level.shape[1] % 2:
            level = np.concatenate([level, np.zeros((level.shape[0], 1))], axis=1)
        half = level.shape[1] // 2
        level = level[:, :half] + level[:, half:]
        levels += 1
    return level[:, 0], levels


def abs_sum(values: np.ndarray):
    """Σ|values| along axis 1, rounded up enough to be an upper bound (any order: ≤ n·u low)."""
    n = values.shape[1]
    return np.abs(values).sum(axis=1) * (1 + (n + 1) * U)


def centre(x: np.ndarray, d: int):
    """c = x − mean(x) with a bound that scales with the spread of x, not with |mean|.

    μ0 = fl(Σx)/d is only a pivot. With t = fl(x − μ0) (|t − (x − μ0)| ≤ u|t|) and
    δ = fl(Σt)/d, the exact mean is μ0 + Σ(x − μ0)/d, so c = x − μ0 − Σ(x − μ0)/d and
    ĉ = fl(t − δ) satisfies |ĉ − c| ≤ u|ĉ| + u|t| + (L+3)·u·Σ|t|/d + u|δ| (first order, L the
    pairwise levels). Everything is relative to |t| ≈ |x − μ|: |mean|/std up to 1e8 costs nothing.
    """
    pivot = x.sum(axis=1, keepdims=True) / d
    t = x - pivot
    abs_t = np.abs(t)
    total, levels = pairwise_sum(t)
    delta = total[:, None] / d
    c = t - delta
    row_term = (levels + 3) * U * abs_sum(t)[:, None] / d + U * np.abs(delta)
    c_err = (U * (np.abs(c) + abs_t) + row_term) * SAFETY
    return c, c_err


# ---- per-row statistics ----------------------------------------------------------------
@dataclass
class RowStats:
    c: np.ndarray | None  # centred (LayerNorm) or raw inputs, (rows, n); None from the fused pass
    c_err: np.ndarray | None  # absolute bound on |ĉ − c|, (rows, n) or scalar 0
    r: np.ndarray  # 1/N, (rows, 1)
    r_rel: np.ndarray  # relative bound on r, (rows, 1)
    rho: np.ndarray  # backward factor ρ, (rows, 1)
    rho_rel: np.ndarray
    degenerate: np.ndarray | None  # (rows,) statistic exactly 0; None from the fused pass
    argmax_phi: np.ndarray | None = None  # p = inf: φ (exact up to u), (rows, n)


def relative(err, value):
    """err/value, 0 for an exact zero, inf where the value underflowed to 0 (no relative bound)."""
    return np.where(value > 0, err / np.where(value > 0, value, 1.0), np.where(err == 0, 0.0, np.inf))


def finish_rms_family(params, c, c_err, s, s_err, degenerate):
    """From the mean square s (with bound) to r = 1/N and ρ, for eps inside or outside."""
    eps = params.eps
    with np.errstate(divide="ignore", invalid="ignore"):
        if params.eps_mode == "inside":
            t = s + eps
            t_rel = (s_err + U * t) / t
            N = np.sqrt(t)  # correctly rounded
            N_rel = t_rel / 2 + U
            rho, rho_rel = np.ones_like(N), np.zeros_like(N)
        else:
            sigma = np.sqrt(s)
            sigma_rel = relative(s_err, s) / 2 + U
            N = sigma + eps
            N_rel = (sigma * sigma_rel + U * N) / N
            rho = np.where(degenerate, 0.0, N / sigma)  # σ = 0 only on degenerate rows
            rho_rel = N_rel + sigma_rel + U
        r = 1.0 / N
        r_rel = (N_rel + U) * SAFETY
    return RowStats(c, c_err, r[:, None], r_rel[:, None], rho[:, None], (rho_rel * SAFETY)[:, None], degenerate)


def _pow_rel(q):
    return (1 + U) ** q * (1 + 2 * U) - 1


def lp_stats(params: NormParams, x: np.ndarray, d: int, degenerate) -> RowStats:
    """Lp power mean computed on x / K with K = max(max|x|, √eps) so that nothing overflows."""
    p, eps = params.p, params.eps
    assert p is not None  # resolve_params gives lpnorm a p
    n = x.shape[1]
    magnitudes = np.abs(x)
    top = magnitudes.max(axis=1)
    if math.isinf(p):
        return _max_norm_stats(params, x, magnitudes, top, d, degenerate)
    floor_root = math.sqrt(eps)
    K = np.maximum(top, floor_root)
    K = np.where(K > 0, K, 1.0)
    with np.errstate(under="ignore"):
        terms = (magnitudes / K[:, None]) ** p
        floor = (floor_root / K) ** p
    term_rel = _pow_rel(p)  # x/K rounds once (u), raised to p; pow ≤ 1 ulp
    total = terms.sum(axis=1)
    total_err = term_rel * total + (n + 1) * U * total + n * TINY
    s = total / d
    s_err = (total_err / d + U * s) * SAFETY
    floor_rel = ((1 + U) ** 2) ** p * (1 + 2 * U) - 1  # √eps and /K round once each
    if params.eps_mode == "inside":
        t = s + floor
        t_err = s_err + floor_rel * floor + U * t + TINY
        N_scaled = t ** (1.0 / p)
        N_rel_scaled = (t_err / t) / p + _inexact_root_rel(p, t)
        N = K * N_scaled
        N_rel = N_rel_scaled + U
        rho, rho_rel = np.ones_like(N), np.zeros_like(N)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma_scaled = s ** (1.0 / p)
            sigma_rel = relative(s_err + TINY * ~degenerate, s) / p + _inexact_root_rel(p, s) + U
            sigma = K * sigma_scaled
            N = sigma + eps
            N_rel = (sigma * sigma_rel + U * N) / N
            ratio = np.where(degenerate, 0.0, N / sigma)
            rho = ratio ** (p - 1)
            rho_rel = (p - 1) * (N_rel + sigma_rel + U) + 2 * U
    r = 1.0 / N
    r_rel = (N_rel + U) * SAFETY
    return RowStats(x, np.zeros((1, 1)), r[:, None], r_rel[:, None], rho[:, None], (rho_rel * SAFETY)[:, None], degenerate)


def _inexact_root_rel(p, t):
    """t**(1/p): 1/p is rounded (relative u), which perturbs the result by u·|ln t|/p; pow adds ≤ 1 ulp."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_t = np.where(t > 0, np.abs(np.log(np.where(t > 0, t, 1.0))), 0.0)
    return 2 * U + U * log_t / p * 1.01 + U


def _max_norm_stats(params, x, magnitudes, top, d, degenerate):
    eps = params.eps
    floor_root = math.sqrt(eps)  # correctly rounded: relative error ≤ u
    if params.eps_mode == "inside":
        # N = max(top, √eps): decide top² ≥ eps exactly (float squares can tie within an ulp)
        squared = top * top
        max_dominates = squared >= eps
        for i in np.flatnonzero(np.abs(squared - eps) <= 4 * U * np.maximum(squared, eps)):
            max_dominates[i] = Fraction(float(top[i])) ** 2 >= Fraction(eps)
        max_dominates &= top > 0
        N = np.where(max_dominates, top, floor_root)
        N_rel = np.where(max_dominates, 0.0, U)
    else:
        max_dominates = top > 0
        N = top + eps
        N_rel = np.full_like(N, U)
    on_top = (magnitudes == top[:, None]) & max_dominates[:, None]
    ties = np.maximum(on_top.sum(axis=1, keepdims=True), 1)
    phi = np.sign(x) * on_top * (d / ties)
    with np.errstate(divide="ignore"):
        r = 1.0 / N
    stats = RowStats(x, np.zeros((1, 1)), r[:, None], ((N_rel + U) * SAFETY)[:, None], np.ones((x.shape[0], 1)),
                     np.zeros((x.shape[0], 1)), degenerate)
    stats.argmax_phi = phi
    return stats


# ---- elements ----------------------------------------------------------------------------
def weight_factor(params: NormParams, w):
    """w̃ (1, w or 1 + w) with its absolute error."""
    if params.affine == "none":
        return np.ones_like(w), np.zeros_like(w)
    if params.affine == "offset_weight":
        factor = 1.0 + w
        return factor, U * np.abs(factor)
    return w, np.zeros_like(w)


def backward_gx(params: NormParams, stats: RowStats, yn, yn_err, w, gy, d: int):
    """gx and its bound (formula in formulas.py)."""
    n = yn.shape[1]
    factor, factor_err = weight_factor(params, w)
    g = gy * factor
    g_err = np.abs(gy) * factor_err + U * np.abs(g)  # (exact, hence 0 extra, when w̃ = 1)
    if params.spec.centred:
        g_total, levels = pairwise_sum(g)
        mean_g = g_total[:, None] / d
        g_err_sum = np.broadcast_to(g_err, g.shape).sum(axis=1, keepdims=True) * (1 + (n + 1) * U)
        mean_g_err = (g_err_sum + levels * U * abs_sum(g)[:, None]) / d + U * np.abs(mean_g)
    else:
        mean_g, mean_g_err = 0.0, 0.0
    gyn = g * yn
    G, levels = pairwise_sum(gyn)
    G = G[:, None]
    propagated = (np.abs(g) * yn_err + g_err * np.abs(yn)).sum(axis=1, keepdims=True) * (1 + (n + 1) * U)
    G_err = propagated + (levels + 1) * U * abs_sum(gyn)[:, None]
    divisor = params.spec.statistic_divisor(n)  # d, or 1 for a plain sum (exact)
    K = stats.rho * G / divisor
    K_err = np.abs(stats.rho) * G_err / divisor + np.abs(K) * (stats.rho_rel + 2 * U)
    phi, phi_err = _phi(params, stats, yn, yn_err)
    centred = g - mean_g
    kphi = K * phi
    inner = centred - kphi
    inner_err = (g_err + mean_g_err + np.abs(K) * phi_err + np.abs(phi) * K_err
                 + U * (np.abs(centred) + np.abs(kphi) + np.abs(inner)))
    gx = stats.r * inner
    gx_err = stats.r * inner_err + np.abs(gx) * stats.r_rel + U * np.abs(gx)
    return gx, gx_err * SAFETY


def _phi(params, stats, yn, yn_err):
    spec = params.spec
    if not (spec.takes_p or spec.statistic == "crms"):  # a sum of squares: φ = ŷ
        return yn, yn_err
    if spec.statistic == "crms":
        total = yn.sum(axis=1, keepdims=True)
        total_err = yn_err.sum(axis=1, keepdims=True) + (yn.shape[1] + 1) * U * np.abs(yn).sum(axis=1, keepdims=True)
        phi = yn + total
        return phi, yn_err + total_err + U * np.abs(phi)
    if stats.argmax_phi is not None:
        return stats.argmax_phi, U * np.abs(stats.argmax_phi)
    # Lp: φ = sign·|ŷ|^(p−1) is monotone in |ŷ|, so the image of [|ŷ|−E, |ŷ|+E] bounds it
    q = params.p - 1
    magnitude = np.abs(yn)
    with np.errstate(under="ignore"):
        centre = magnitude**q
        upper = (magnitude + yn_err) ** q
        lower = np.maximum(magnitude - yn_err, 0.0) ** q
    spread = np.maximum(upper - centre, centre - lower) * (1 + 8 * U) + 8 * U * upper + TINY
    return np.sign(yn) * centre, spread


def gw_terms(yn, yn_err, gy):
    """Per-element gy·ŷ with bound, to be summed over rows by the caller."""
    term = gy * yn
    return term, np.abs(gy) * yn_err + U * np.abs(term)
