"""Exact round-to-nearest-even by integer arithmetic: an oracle independent of
`FloatFormat.round` (which scales and calls np.rint) and of any library's casts.

A finite float64 v is M·2^E exactly with M a 53-bit integer (np.frexp). Rounding to a format
of precision p keeps the bits of M above the format's quantum 2^q at |v| (q = max(⌊log2|v|⌋,
emin) − (p − 1)); the dropped bits decide the direction, a tie going to the even kept value.
Overflow is judged after rounding with an unbounded exponent, as IEEE 754 does.
"""

from __future__ import annotations

import numpy as np


def exact_round_to_float64(values, fmt) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    out = v.copy()  # NaN, ±inf and zeros pass through; the format's conventions come after
    finite = np.isfinite(v) & (v != 0)
    mantissa, exponent = np.frexp(np.abs(v[finite]))  # |v| = mantissa·2^exponent, mantissa in [0.5, 1)
    M = (mantissa * 2.0**53).astype(np.int64)  # exact: 53 bits
    E = exponent.astype(np.int64) - 53
    q = np.maximum(exponent.astype(np.int64) - 1, fmt.emin) - (fmt.precision - 1)
    shift = q - E  # low bits of M below the quantum
    big = shift > 60  # every bit dropped, and M < 2^53 < half the quantum: rounds to zero
    s = np.clip(shift, 0, 60)
    kept = M >> s
    dropped = M - (kept << s)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    up = (s > 0) & ((dropped > half) | ((dropped == half) & (kept % 2 == 1)))
    kept = np.where(big, 0, kept + up)
    magnitude = np.ldexp(kept.astype(np.float64), np.where(shift > 0, q, E).astype(np.int32))
    out[finite] = np.copysign(magnitude, v[finite])
    return apply_overflow_convention(out, fmt)


def apply_overflow_convention(rounded, fmt) -> np.ndarray:
    """Values beyond the largest finite (and ±inf inputs): inf, NaN (e4m3fn, fnuz) or the
    largest finite (fp6/fp4, which have neither); a format with one zero has no −0."""
    out = np.array(rounded, dtype=np.float64)
    over = np.abs(out) > fmt.max_finite
    if fmt.has_inf:
        out[over] = np.copysign(np.inf, out[over])
    else:
        out[over] = np.copysign(fmt.max_finite, out[over]) if not fmt.has_nan else np.nan
    if not fmt.has_negative_zero:
        out[out == 0] = 0.0
    return out
