"""e8m0 (MX block scales): the bytes against ml_dtypes' decoding (a bit-pattern table, not
arithmetic), and the cast against exact rational arithmetic on every fp16/bf16 value and random
fp32. How ml_dtypes and torch cast to e8m0 are versioned upstream facts (tests/test_upstream.py)."""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from normtheory.scale_format import E8M0

DT = np.dtype(ml_dtypes.float8_e8m0fnu)


def same(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return bool(np.all((np.isnan(a) & np.isnan(b)) | (a == b)))


def exact_e8m0(value: float) -> float:
    """The nearest power of two in [2**-127, 2**127] by exact rational comparison, a tie going
    up; NaN where e8m0 has no value (zero, negative, inf, NaN, 1.5·2**127 and above)."""
    if not math.isfinite(value) or value <= 0 or Fraction(value) >= Fraction(3, 2) * 2**127:
        return math.nan
    exact = Fraction(value)
    below = max(-127, math.floor(math.log2(value)))
    while Fraction(2) ** (below + 1) <= exact:  # log2 of a float64 can be off by one near 2**k
        below += 1
    while below > -127 and Fraction(2) ** below > exact:
        below -= 1
    low, high = Fraction(2) ** below, Fraction(2) ** (below + 1)
    return float(high if exact - low >= high - exact and below < 127 else low)


def test_every_byte_decodes_as_ml_dtypes_does():
    codes = np.arange(256, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        theirs = codes.view(DT).astype(np.float64)
    assert same(E8M0.all_values(), theirs)
    assert np.isnan(E8M0.all_values()).sum() == 1 and E8M0.all_values()[0] == 2.0**-127
    finite = E8M0.all_values()[:255]
    assert np.array_equal(E8M0.to_codes(finite), codes[:255])


@pytest.mark.parametrize("source", [np.float16, ml_dtypes.bfloat16])
def test_cast_is_exact_on_every_16_bit_input(source):
    with np.errstate(invalid="ignore"):  # widening signalling NaNs warns
        values = np.arange(2**16, dtype=np.uint16).view(source).astype(np.float64)
    assert same(E8M0.round_to_float64(values), [exact_e8m0(v) for v in values])


def test_cast_is_exact_on_random_fp32_and_the_subnormal_edge():
    bits = np.random.default_rng(5).integers(0, 2**32, size=2**15, dtype=np.uint64).astype(np.uint32)
    with np.errstate(invalid="ignore"):
        values = bits.view(np.float32).astype(np.float64)
    edge = np.ldexp(np.linspace(0.5, 3.5, 97), -127)  # around 2**-127, 1.5·2**-127, 2**-126
    values = np.concatenate([values, edge, np.ldexp(np.linspace(1.0, 2.0, 33), 127)])
    assert same(E8M0.round_to_float64(values), [exact_e8m0(v) for v in values])


def test_a_wrong_tie_rule_is_detected():
    """The same comparison fails for ties to the even code (what ml_dtypes 0.5.0 did)."""
    with np.errstate(invalid="ignore"):
        x = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float64)
    ties_even = E8M0.round_to_float64(x)
    mantissa, exponent = np.frexp(x)
    tie = mantissa == 0.75
    ties_even[tie & (exponent % 2 == 0)] /= 2  # the tie goes to the odd exponent (even code) instead
    assert not same(ties_even, [exact_e8m0(v) for v in x])


def test_from_exponent_range_and_nan():
    assert np.array_equal(E8M0.from_exponent([-127, 0, 127, 128, -128, np.nan]), [0, 127, 254, 255, 255, 255])
