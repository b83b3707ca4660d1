"""The OCP MX block-scale format e8m0 ("fnu": finite, NaN, unsigned), defined once.

An e8m0 byte k encodes the power of two 2**(k − 127) for k = 0 … 254 and NaN for k = 255:
no sign, no zero, no significand bits. It is not a `FloatFormat` (nothing is normalized into
it; `round` would have no zero or sign to keep), so it lives here and not in `FORMATS`.

Casting an arbitrary float to e8m0 (`round_to_float64`), defined here and tested against exact
rational arithmetic (tests/test_fp8_scale_format.py):
- round to the nearest power of two, a tie (1.5·2**e) going up, to 2**(e + 1);
- magnitudes up to 2**-127 clamp to 2**-127 (there is nothing smaller);
- 1.5·2**127 and above, ±inf, NaN, zero and negative values become NaN.
ml_dtypes' cast follows this rule from 0.7.0; earlier releases send fp32 values between 2**-127
and 2**-126 up to 2**-126, and 0.5.0 breaks ties to the even code. torch 2.13 (CPU) writes 0
as 0x00 (2**-127) and drops the sign of a negative input. These are versioned upstream facts
(docs/upstream.md). The MX recipe never casts a float to e8m0 — it computes the exponent
directly (`from_exponent`), so none of these differences reaches scaled quantization.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

BIAS = 127
MIN_EXPONENT = -127
MAX_EXPONENT = 127
NAN_CODE = 255


class E8M0Format:
    name = "fp8_e8m0fnu"
    dtype = np.dtype(ml_dtypes.float8_e8m0fnu)
    bits_dtype = np.dtype(np.uint8)
    min_value = math.ldexp(1.0, MIN_EXPONENT)
    max_value = math.ldexp(1.0, MAX_EXPONENT)

    def decode(self, codes) -> np.ndarray:
        """Bytes -> float64 values (2**(k − 127), NaN for 255)."""
        k = np.asarray(codes, dtype=np.int64)
        return np.where(k == NAN_CODE, np.nan, np.ldexp(1.0, k - BIAS))

    def from_exponent(self, exponent) -> np.ndarray:
        """Integer exponents e -> the bytes of 2**e; NaN (255) outside [−127, 127] or where the
        exponent is not finite (the MX spec's NaN scale)."""
        e = np.asarray(exponent, dtype=np.float64)
        valid = np.isfinite(e) & (e >= MIN_EXPONENT) & (e <= MAX_EXPONENT)
        return np.where(valid, np.where(valid, e, 0) + BIAS, NAN_CODE).astype(np.uint8)

    def round_to_float64(self, values) -> np.ndarray:
        """Cast float64 values to e8m0 by the rules above, returning the values."""
        x = np.asarray(values, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mantissa, exponent = np.frexp(x)  # x = mantissa·2**exponent, mantissa in [0.5, 1)
            # nearest power of two, ties up: 2**(exponent − 1) unless mantissa >= 0.75
            nearest = np.where(mantissa >= 0.75, exponent, exponent - 1)
            nearest = np.maximum(nearest, MIN_EXPONENT)
            result = np.ldexp(1.0, np.clip(nearest, MIN_EXPONENT, MAX_EXPONENT + 1))
        no_value = ~np.isfinite(x) | (x <= 0) | (nearest > MAX_EXPONENT)
        return np.where(no_value, np.nan, result)

    def to_codes(self, values) -> np.ndarray:
        """Exact e8m0 values (powers of two in range, or NaN) -> bytes."""
        x = np.asarray(values, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            exponent = np.where(np.isfinite(x) & (x > 0), np.log2(np.where(x > 0, x, 1.0)), np.nan)
        if not np.all(np.isnan(exponent) | (exponent == np.round(exponent))):
            raise ValueError("e8m0 values must be powers of two")
        return self.from_exponent(exponent)

    def all_values(self) -> np.ndarray:
        return self.decode(np.arange(256))


E8M0 = E8M0Format()
SCALE_FORMATS = {E8M0.name: E8M0}
