"""LayerNorm and RMSNorm forward in one compiled pass per row: statistics, elements, bounds
and the rounding test, with each row read from cache a few times instead of streaming a
dozen full-size numpy temporaries through memory.

The bounds are the ones of fastpath.py, with one change: sums are accumulated with
error-free TwoSum (Ogita–Rump–Oishi Sum2), whose result s satisfies
    |s − Σp| ≤ u·|s| + γ_{n−1}²·Σ|p|,   γ_k = k·u / (1 − k·u)
(Ogita, Rump, Oishi 2005, Prop. 4.5) — tighter than a pairwise tree, and in a single loop.

LayerNorm (pivot μ0 = fl(Σx)/d, t = fl(x − μ0), δ = fl(T)/d with T = Sum2(t)):
    |ĉ_j − c_j| ≤ u|ĉ_j| + u|t_j| + B,   B = (E_T + u·Σ|t|)/d + u|δ|,
    E_T = u|T| + γ_{n−1}²·Σ|t|   (the exact mean is μ0 + Σ(x − μ0)/d; see fastpath.centre).
RMSNorm: ĉ = x exactly.
Mean square: SS = Sum2(fl(ĉ²)); |SS − Σc²| ≤ u|SS| + γ_{n−1}²·Σĉ² + u·Σĉ² + Σ ε_c(2|ĉ| + ε_c).
Then N, r = 1/N and ρ exactly as fastpath.finish_rms_family, elements as decide.py's kernel.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from normtheory.formats import FloatFormat
from normtheory.reference.decide import _decide_one, forward_element


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


# One compiled loop per row, longer than the house limit on purpose: numba compiles it into a
# single pass over the row held in cache, and splitting it would cost a call per element.
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _rows_kernel(x, d, centred, eps, inside, factor, factor_err, bias, has_bias, want_yn, u, safety,
                 precision, emin, min_normal, max_finite, has_inf,
                 rounded, decided, y_out, yn_out, yn_err_out, r_out, r_rel_out, rho_out, rho_rel_out):
    rows, n = x.shape
    gamma = (n - 1) * u / (1.0 - (n - 1) * u)
    gamma2 = gamma * gamma
    scratch = np.empty(2, dtype=np.float64)
    scratch_bits = scratch.view(np.uint64)
    row_c = np.empty(n)
    row_c_err = np.empty(n)
    for i in range(rows):
        # ---- centring --------------------------------------------------------------------
        pivot = 0.0
        delta = 0.0
        row_term = 0.0
        degenerate = True
        if centred:
            first = x[i, 0]
            total = 0.0
            for j in range(n):
                total += x[i, j]
                if x[i, j] != first:
                    degenerate = False
            pivot = total / d
            s_hi = 0.0
            s_lo = 0.0
            abs_t = 0.0
            for j in range(n):
                t = x[i, j] - pivot
                s_hi, e = _two_sum(s_hi, t)
                s_lo += e
                abs_t += abs(t)
            abs_t *= 1.0 + (n + 1) * u
            T = s_hi + s_lo
            err_T = u * abs(T) + gamma2 * abs_t
            delta = T / d
            row_term = ((err_T + u * abs_t) / d + u * abs(delta)) * safety
            if degenerate:  # a constant row is its own mean: c = 0 exactly
                row_term = 0.0
        else:
            for j in range(n):
                if x[i, j] != 0.0:
                    degenerate = False
        # ---- mean square -----------------------------------------------------------------
        ss_hi = 0.0
        ss_lo = 0.0
        propagated = 0.0
        for j in range(n):
            if degenerate:
                c = 0.0 if centred else x[i, j]
                c_err = 0.0
            elif centred:
                t = x[i, j] - pivot
                c = t - delta
                c_err = (u * (abs(c) + abs(t))) * safety + row_term
            else:
                c = x[i, j]
                c_err = 0.0
            row_c[j] = c
            row_c_err[j] = c_err
            ss_hi, e = _two_sum(ss_hi, c * c)
            ss_lo += e
            propagated += c_err * (2.0 * abs(c) + c_err)
        ss = ss_hi + ss_lo
        ss_err = u * ss + gamma2 * ss + u * ss + propagated * (1.0 + (n + 1) * u)
        s = ss / d
        s_err = (ss_err / d + u * s) * safety
        # ---- normalizer (fastpath.finish_rms_family) ---------------------------------------
        if inside:
            tt = s + eps
            N = math.sqrt(tt)
            N_rel = ((s_err + u * tt) / tt) / 2.0 + u if tt > 0 else math.inf
            rho, rho_rel = 1.0, 0.0
        else:
            sigma = math.sqrt(s)
            # s = 0 on a row that is not constant means the mean square underflowed: no bound
            sigma_rel = (s_err / s if s > 0 else (0.0 if s_err == 0 else math.inf)) / 2.0 + u
            N = sigma + eps
            N_rel = (sigma * sigma_rel + u * N) / N if N > 0 else math.inf
            rho = 0.0 if degenerate else N / sigma
            rho_rel = (N_rel + sigma_rel + u) * safety
        r = 1.0 / N if N > 0 else math.inf
        r_rel = (N_rel + u) * safety
        r_out[i], r_rel_out[i], rho_out[i], rho_rel_out[i] = r, r_rel, rho, rho_rel
        # ---- elements --------------------------------------------------------------------
        for j in range(n):
            c = row_c[j]
            c_err = row_c_err[j]
            y, y_err, yn, yn_err = forward_element(c, c_err, r, r_rel, factor[j], factor_err[j], bias[j], has_bias,
                                                   u, safety)
            y_out[i, j] = y
            if want_yn:  # only the backward pass needs ŷ and its bound
                yn_out[i, j] = yn
                yn_err_out[i, j] = yn_err
            rounded[i, j], decided[i, j] = _decide_one(y, y_err, precision, emin, min_normal,
                                                       max_finite, has_inf, scratch, scratch_bits)


def fused_forward(centred: bool, x, d: int, eps: float, inside: bool, factor, factor_err, bias, has_bias: bool,
                  fmt: FloatFormat, u: float, safety: float, rounded: np.ndarray, want_yn: bool):
    """LayerNorm (centred) or RMSNorm rows; writes rounded y into `rounded` (a C-contiguous block) and
    returns (decided, y, ŷ, bound on ŷ, r, r_rel, ρ, ρ_rel); ŷ and its bound only if want_yn."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    rows, n = x.shape
    vec = lambda v: np.ascontiguousarray(np.broadcast_to(v, (n,)), dtype=np.float64)  # noqa: E731
    decided = np.empty((rows, n), dtype=np.bool_)
    y = np.empty((rows, n))
    yn, yn_err = (np.empty((rows, n) if want_yn else (0, 0)) for _ in range(2))
    per_row = [np.empty(rows) for _ in range(4)]
    _rows_kernel(x, d, centred, eps, inside, vec(factor), vec(factor_err), vec(bias), has_bias, want_yn, u, safety,
                 fmt.precision, fmt.emin, fmt.min_normal, fmt.max_finite, fmt.has_inf,
                 rounded, decided, y, yn, yn_err, *per_row)
    return (decided, y, yn, yn_err, *per_row)
