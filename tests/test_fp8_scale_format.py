"""e8m0 (MX block scales): the definition against ml_dtypes on every byte and every cast from
fp16/bf16, plus random fp32; torch's different edge conventions recorded as a finding."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from normtheory.scale_format import E8M0

DT = np.dtype(ml_dtypes.float8_e8m0fnu)


def same(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return bool(np.all((np.isnan(a) & np.isnan(b)) | (a == b)))


def ml_dtypes_cast(values32):
    with np.errstate(all="ignore"):
        return values32.astype(DT).astype(np.float64)


def test_every_byte_decodes_as_ml_dtypes_does():
    codes = np.arange(256, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        theirs = codes.view(DT).astype(np.float64)
    assert same(E8M0.all_values(), theirs)
    assert np.isnan(E8M0.all_values()).sum() == 1 and E8M0.all_values()[0] == 2.0**-127
    finite = E8M0.all_values()[:255]
    assert np.array_equal(E8M0.to_codes(finite), codes[:255])


@pytest.mark.parametrize("source", [np.float16, ml_dtypes.bfloat16])
def test_cast_agrees_with_ml_dtypes_on_every_16_bit_input(source):
    with np.errstate(invalid="ignore"):  # widening signalling NaNs warns
        values32 = np.arange(2**16, dtype=np.uint16).view(source).astype(np.float32)
        values64 = values32.astype(np.float64)
    assert same(E8M0.round_to_float64(values64), ml_dtypes_cast(values32))


def test_cast_agrees_with_ml_dtypes_on_random_fp32():
    bits = np.random.default_rng(5).integers(0, 2**32, size=2**20, dtype=np.uint64).astype(np.uint32)
    values32 = bits.view(np.float32)
    with np.errstate(invalid="ignore"):
        values64 = values32.astype(np.float64)
    assert same(E8M0.round_to_float64(values64), ml_dtypes_cast(values32))


def test_a_wrong_tie_rule_is_detected():
    """The same comparison fails for round-half-to-even on the exponent (a plausible misreading)."""
    with np.errstate(invalid="ignore"):
        values32 = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)
        x = values32.astype(np.float64)
    ties_even = E8M0.round_to_float64(x)
    mantissa, exponent = np.frexp(x)
    tie = mantissa == 0.75
    ties_even[tie & (exponent % 2 == 0)] /= 2  # the tie goes to the even exponent instead
    assert not same(ties_even, ml_dtypes_cast(values32))


def test_from_exponent_range_and_nan():
    assert np.array_equal(E8M0.from_exponent([-127, 0, 127, 128, -128, np.nan]), [0, 127, 254, 255, 255, 255])


def test_torch_differs_on_zero_and_negative_inputs():
    """A recorded finding (torch 2.13 CPU): 0 -> 0x00 and −1 -> 0x7F, where ml_dtypes writes NaN."""
    torch = pytest.importorskip("torch")
    if not hasattr(torch, "float8_e8m0fnu"):
        pytest.skip("this torch has no float8_e8m0fnu")
    values = torch.tensor([0.0, -1.0, 1.5, 3.0])
    codes = values.to(torch.float8_e8m0fnu).view(torch.uint8).tolist()
    ml = E8M0.to_codes(E8M0.round_to_float64(values.numpy().astype(np.float64))).tolist()
    assert ml == [255, 255, 128, 129]
    assert codes[2:] == ml[2:]  # ties up, like ml_dtypes
    assert codes[:2] != ml[:2], "torch now agrees with ml_dtypes on 0 and negatives: update scale_format.py"
