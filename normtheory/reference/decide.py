"""Compiled interval test: does [ŷ − E, ŷ + E] round to one value of the format?

One fused pass (numba) per element instead of a dozen numpy passes: this loop is the hot
spot of `correctly_rounded`. Rounding is the same exact RNE as `FloatFormat.round_to_float64`
(frexp, scale to an integer quantum, rint, scale back), checked against it in the tests.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from normtheory.formats import FloatFormat

# Widening that makes the float64 ends enclose [ŷ − E, ŷ + E] despite their own rounding:
# with W = E(1 + 2^-40) + |ŷ|·2^-51, fl(ŷ − W) ≤ ŷ − E and fl(ŷ + W) ≥ ŷ + E (u = 2^-53).
_WIDEN_REL = 1.0 + 2.0**-40
_WIDEN_ABS = 2.0**-51


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _round_scalar(v, precision, emin, max_finite, has_inf):
    if v == 0.0 or not math.isfinite(v):
        return v
    _, exponent = math.frexp(v)
    quantum_exp = max(exponent - 1, emin) - (precision - 1)
    r = math.ldexp(np.rint(math.ldexp(v, -quantum_exp)), quantum_exp)
    if abs(r) > max_finite:
        return math.copysign(math.inf, v) if has_inf else math.nan
    return r


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _round_bits_fast(bits, dropped, half_minus_one, keep_mask):
    """RNE of a binary64 pattern to fewer significand bits (normal range, see formats.py)."""
    return (bits + half_minus_one + ((bits >> dropped) & np.uint64(1))) & keep_mask


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _decide_one(a, e, precision, emin, min_normal, max_finite, has_inf, scratch, scratch_bits):
    """(rounded value, decided) for one approximation a with bound e."""
    if not (math.isfinite(a) and math.isfinite(e)):
        return math.nan, False
    if e == 0.0:  # exact: no widening (and -0.0 + 0.0 would lose the sign of zero)
        low_in = a
        high_in = a
    else:
        widened = e * _WIDEN_REL + abs(a) * _WIDEN_ABS
        low_in = a - widened
        high_in = a + widened
    if (precision < 53 and abs(low_in) >= min_normal and abs(high_in) >= min_normal
            and abs(low_in) <= max_finite and abs(high_in) <= max_finite):
        dropped = np.uint64(52 - (precision - 1))
        half_minus_one = np.uint64((1 << (52 - precision)) - 1)
        keep_mask = ~np.uint64((1 << (53 - precision)) - 1)
        scratch[0] = low_in
        scratch[1] = high_in
        scratch_bits[0] = _round_bits_fast(scratch_bits[0], dropped, half_minus_one, keep_mask)
        scratch_bits[1] = _round_bits_fast(scratch_bits[1], dropped, half_minus_one, keep_mask)
        low, high = scratch[0], scratch[1]
        if abs(low) > max_finite:
            low = math.copysign(math.inf, low) if has_inf else math.nan
        if abs(high) > max_finite:
            high = math.copysign(math.inf, high) if has_inf else math.nan
    else:
        low = _round_scalar(low_in, precision, emin, max_finite, has_inf)
        high = _round_scalar(high_in, precision, emin, max_finite, has_inf)
    if math.isnan(low) or math.isnan(high):
        return low, math.isnan(low) and math.isnan(high)
    return low, low == high and math.copysign(1.0, low) == math.copysign(1.0, high)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _decide_kernel(approx, err, precision, emin, min_normal, max_finite, has_inf, rounded, decided):
    scratch = np.empty(2, dtype=np.float64)
    scratch_bits = scratch.view(np.uint64)
    for k in range(approx.size):
        rounded[k], decided[k] = _decide_one(approx[k], err[k], precision, emin, min_normal, max_finite, has_inf,
                                             scratch, scratch_bits)


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def normalized_element(c, c_err, r, r_rel, u, safety):
    """(ŷ, bound on ŷ): ŷ = fl(c·r) errs by |ŷ|(δr + u) + ε_c·r(1 + δr). The one formula the
    row passes (rowpass.py) and `forward_element` share: their bounds must agree bit for bit."""
    yn = c * r
    return yn, (abs(yn) * (r_rel + u) + c_err * r * (1.0 + r_rel)) * safety


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def forward_element(c, c_err, r, r_rel, factor, factor_err, bias, has_bias, u, safety):
    """One forward element and its bounds: (y, bound on y, ŷ, bound on ŷ).

    ŷ and its bound as `normalized_element`; y = fl(ŷ·w̃) adds |w̃|·E(ŷ) + |ŷ|·E(w̃) + u|y|;
    the bias add adds u|y| (first order; the bound on y still gets the caller's SAFETY).
    """
    yn, yn_err = normalized_element(c, c_err, r, r_rel, u, safety)
    y = yn * factor
    y_err = abs(factor) * yn_err + abs(yn) * factor_err + u * abs(y)
    if has_bias:
        y = y + bias
        y_err += u * abs(y)
    return y, y_err * safety, yn, yn_err


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _forward_kernel(c, c_err, r, r_rel, factor, factor_err, bias, has_bias, safety, u,
                    precision, emin, min_normal, max_finite, has_inf, rounded, decided, y_out, yn_out, yn_err_out):
    """Forward elements and their bounds (see fastpath.forward for the derivation), then the test."""
    scratch = np.empty(2, dtype=np.float64)
    scratch_bits = scratch.view(np.uint64)
    rows, n = c.shape
    for i in range(rows):
        ri = r[i]
        rel = r_rel[i]
        for j in range(n):
            y, y_err, yn_out[i, j], yn_err_out[i, j] = forward_element(
                c[i, j], c_err[i, j], ri, rel, factor[j], factor_err[j], bias[j], has_bias, u, safety)
            y_out[i, j] = y
            rounded[i, j], decided[i, j] = _decide_one(y, y_err, precision, emin, min_normal,
                                                       max_finite, has_inf, scratch, scratch_bits)


def forward_and_decide(stats, factor, factor_err, bias, has_bias: bool, fmt: FloatFormat, u: float, safety: float):
    """(decided, rounded y, y estimate, ŷ, bound on ŷ) for one block of rows (`forward_element`)."""
    c = np.ascontiguousarray(stats.c, dtype=np.float64)
    rows, n = c.shape
    c_err = np.ascontiguousarray(np.broadcast_to(stats.c_err, c.shape), dtype=np.float64)
    factor = np.ascontiguousarray(np.broadcast_to(factor, (n,)), dtype=np.float64)
    factor_err = np.ascontiguousarray(np.broadcast_to(factor_err, (n,)), dtype=np.float64)
    bias = np.ascontiguousarray(np.broadcast_to(bias, (n,)), dtype=np.float64)
    rounded = np.empty((rows, n))
    decided = np.empty((rows, n), dtype=np.bool_)
    y = np.empty((rows, n))
    yn = np.empty((rows, n))
    yn_err = np.empty((rows, n))
    _forward_kernel(c, c_err, np.ascontiguousarray(stats.r.reshape(-1)), np.ascontiguousarray(stats.r_rel.reshape(-1)),
                    factor, factor_err, bias, has_bias, safety, u, fmt.precision, fmt.emin, fmt.min_normal,
                    fmt.max_finite, fmt.has_inf, rounded, decided, y, yn, yn_err)
    return decided, rounded, y, yn, yn_err


def decide_interval(approx: np.ndarray, err: np.ndarray, fmt: FloatFormat):
    """(decided mask, rounded float64 values): decided where both ends round to the same bits."""
    approx = np.ascontiguousarray(approx, dtype=np.float64)
    err = np.ascontiguousarray(np.broadcast_to(err, approx.shape), dtype=np.float64)
    rounded = np.empty(approx.shape)
    decided = np.empty(approx.shape, dtype=np.bool_)
    _decide_kernel(approx.reshape(-1), err.reshape(-1), fmt.precision, fmt.emin, fmt.min_normal, fmt.max_finite,
                   fmt.has_inf,
                   rounded.reshape(-1), decided.reshape(-1))
    return decided, rounded
