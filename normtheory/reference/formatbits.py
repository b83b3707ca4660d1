"""Rounding to a format inside compiled code, on the binary64 bit pattern (formats of at most
52 significand bits; exact RNE as FloatFormat.round_to_float64, which the tests check)."""

from __future__ import annotations

import math

import numba
import numpy as np

from normtheory.reference.bitcast import bits_of, float_of


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def round_to_format(v, precision, emin, min_normal, max_finite, has_inf):
    """RNE of a finite float64 to the format (exponent unbounded, then overflow: inf, or NaN);
    ±0, ±inf and NaN pass through unchanged (no caller rounds a non-finite value)."""
    if v == 0.0 or not math.isfinite(v):
        return v
    if abs(v) >= min_normal:  # drop the low bits of the binary64 pattern, ties to even
        dropped = np.uint64(52 - (precision - 1))
        bits = bits_of(v)
        half_minus_one = (np.uint64(1) << (dropped - np.uint64(1))) - np.uint64(1)
        odd = (bits >> dropped) & np.uint64(1)
        keep = ~((np.uint64(1) << dropped) - np.uint64(1))
        r = float_of((bits + half_minus_one + odd) & keep)
    else:  # the format's subnormals: a fixed quantum 2^(emin − p + 1), scaling by it is exact
        quantum_exp = emin - (precision - 1)
        r = math.ldexp(np.rint(math.ldexp(v, -quantum_exp)), quantum_exp)
    if abs(r) > max_finite:
        return math.copysign(math.inf, v) if has_inf else math.nan
    return r


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def quantum_at(magnitude, precision, emin):
    """Spacing of the format's values at a positive normal binary64 value (from its exponent field)."""
    exponent = np.int64((bits_of(magnitude) >> np.uint64(52)) & np.uint64(0x7FF)) - 1023
    quantum_exp = max(exponent, emin) - (precision - 1)
    return float_of(np.uint64(quantum_exp + 1023) << np.uint64(52))
