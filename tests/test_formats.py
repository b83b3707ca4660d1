"""Formats: definitions checked against exact arithmetic (integer rounding, mpmath) and bit
patterns, exhaustively where the domain is small. What ml_dtypes and torch do is probed and
tabled in normtheory/upstream (tests/test_upstream.py), not asserted here."""

from __future__ import annotations

import math

import ml_dtypes
import mpmath
import numpy as np
import pytest
from exact_rounding import exact_round_to_float64

from normtheory.formats import FORMATS, round_dyadic

FP8_FP6_FP4 = ["fp8_e4m3fn", "fp8_e5m2", "fp8_e4m3fnuz", "fp8_e5m2fnuz", "fp6_e2m3fn", "fp6_e3m2fn", "fp4_e2m1fn"]
SMALL = ["fp16", "bf16"] + FP8_FP6_FP4
NARROWER = {  # source format -> formats it can be rounded into (fewer significand bits)
    "fp16": ["bf16"] + FP8_FP6_FP4,
    "bf16": ["fp16"] + FP8_FP6_FP4,
}


def all_as_float32(name: str) -> np.ndarray:
    """Every value of a 16-bit format as float32 (exact: fp16, bf16 ⊂ fp32)."""
    fmt = FORMATS[name]
    with np.errstate(invalid="ignore"):  # numpy warns when NaNs are narrowed
        return fmt.to_float64(fmt.all_values()).astype(np.float32)


def without_nan_for_nanless(values, fmt):
    """Drop NaN inputs for formats without NaN (fp6/fp4): they have no value there, and
    ml_dtypes' cast writes −0 for them (documented in formats.py), which is not a rounding."""
    return values if fmt.has_nan else values[~np.isnan(values)]


def same_values(a, b) -> bool:
    """Values equal with NaN as NaN and the sign of zero respected (never NaN bytes)."""
    with np.errstate(invalid="ignore"):
        a, b = np.asarray(a).astype(np.float64), np.asarray(b).astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    equal = (a == b) & (np.signbit(a) == np.signbit(b))
    return bool(np.all(both_nan | equal))


@pytest.mark.parametrize("name", SMALL)
def test_constants_match_every_bit_pattern(name):
    fmt = FORMATS[name]
    values = fmt.to_float64(fmt.all_values())
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    assert finite.max() == fmt.max_finite
    assert positive.min() == fmt.min_subnormal
    normal = positive[positive >= fmt.min_normal]
    assert normal.min() == fmt.min_normal and positive[positive < fmt.min_normal].max() < fmt.min_normal
    assert np.isinf(values).any() == fmt.has_inf
    assert np.isnan(values).any() == fmt.has_nan
    zeros = values[values == 0]
    assert np.signbit(zeros).any() == fmt.has_negative_zero
    assert values.size == 2**fmt.width  # every pattern of the encoding, and no more
    assert fmt.unit_roundoff == math.ldexp(1, -fmt.precision)
    assert float(ml_dtypes.finfo(fmt.dtype).max) == fmt.max_finite


def test_wide_format_constants_match_numpy():
    for name, dtype in (("fp32", np.float32), ("fp64", np.float64)):
        info, fmt = np.finfo(dtype), FORMATS[name]
        expected = (float(info.max), float(info.tiny), float(info.smallest_subnormal))
        assert (fmt.max_finite, fmt.min_normal, fmt.min_subnormal) == expected
        assert fmt.precision == info.nmant + 1


@pytest.mark.parametrize("name", SMALL)
def test_every_bit_pattern_round_trips(name):
    fmt = FORMATS[name]
    values = fmt.all_values()
    as_float = fmt.to_float64(values)
    assert same_values(fmt.round(as_float), values)
    assert same_values(fmt.from_bits(fmt.to_bits(values)), values)
    assert fmt.is_representable(as_float).all()


@pytest.mark.parametrize("source", ["fp16", "bf16"])
def test_round_is_exact_on_every_16_bit_input(source):
    """Our rounding against exact integer arithmetic (tests/exact_rounding.py), never against
    a library's cast: what ml_dtypes does is an upstream fact (normtheory/upstream)."""
    values = all_as_float32(source).astype(np.float64)
    for target in NARROWER[source]:
        fmt = FORMATS[target]
        inputs = without_nan_for_nanless(values, fmt)
        assert same_values(fmt.round(inputs), exact_round_to_float64(inputs, fmt)), (source, target)


def random_fp32(count: int, seed: int = 0) -> np.ndarray:
    bits = np.random.default_rng(seed).integers(0, 2**32, size=count, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    return values[np.isfinite(values)]


def random_float64(count: int, seed: int = 0) -> np.ndarray:
    """Every exponent of float64 (random bits) and values near the narrow formats' ranges."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**64, size=count, dtype=np.uint64).view(np.float64)
    near = rng.standard_normal(count) * np.exp2(rng.integers(-160, 140, count))
    return np.concatenate([bits[np.isfinite(bits)], near])


@pytest.mark.parametrize("target", ["fp32", "fp16", "bf16"] + FP8_FP6_FP4)
def test_round_is_exact_on_random_inputs(target):
    fmt = FORMATS[target]
    values = np.concatenate([random_fp32(2**18).astype(np.float64), random_float64(2**17)])
    with np.errstate(over="ignore"):
        assert same_values(fmt.round_to_float64(values), exact_round_to_float64(values, fmt))


def test_the_exact_oracle_catches_a_wrong_tie_rule():
    """Ties away from zero instead of to even differ from the oracle: the comparison can fail."""
    fmt = FORMATS["bf16"]
    base = fmt.round_to_float64(np.random.default_rng(3).standard_normal(1000))
    ties = base + fmt.ulp(base) / 2
    away = np.where(ties > 0, base + fmt.ulp(base), base - fmt.ulp(base))
    assert not same_values(away, exact_round_to_float64(ties, fmt))
    assert same_values(fmt.round_to_float64(ties), exact_round_to_float64(ties, fmt))


def test_boundaries():
    e4, e5 = FORMATS["fp8_e4m3fn"], FORMATS["fp8_e5m2"]
    assert same_values(e4.round_to_float64([464.0, 480.0, 2.0**-10, -464.0]), [448.0, np.nan, 0.0, -448.0])
    assert same_values(e4.round_to_float64([480.0, np.inf, -np.inf, 1e30, np.nan], saturate=True),
                       [448.0, 448.0, -448.0, 448.0, np.nan])
    assert same_values(e5.round_to_float64([61440.0, 61439.0]), [np.inf, 57344.0])
    assert same_values(e5.round_to_float64([61440.0, np.inf, -np.inf], saturate=True), [57344.0, 57344.0, -57344.0])
    assert same_values(FORMATS["fp16"].round_to_float64([65520.0, 65519.0]), [np.inf, 65504.0])


def _mpmath_rne(value: float, fmt) -> float:
    """Independent oracle: mpmath's round-half-even at p bits, with the subnormal quantum."""
    if value == 0 or not math.isfinite(value):
        return value
    quantum = fmt.min_subnormal
    if abs(value) < fmt.min_normal:  # fixed quantum: round value/quantum to an integer, half-even
        scaled = mpmath.mpf(value) / quantum
        floor = mpmath.floor(scaled)
        rest = scaled - floor
        up = rest > 0.5 or (rest == 0.5 and int(floor) % 2 == 1)
        result = math.copysign(float((floor + (1 if up else 0)) * quantum), value)
    else:
        with mpmath.workprec(fmt.precision):
            result = float(+mpmath.mpf(value))
    if abs(result) > fmt.max_finite:
        result = math.copysign(math.inf, value)
    return result


def _overflow_convention(expected, fmt):
    """±inf from the oracle -> what the format writes without saturation."""
    overflow = np.isinf(expected)
    if not fmt.has_inf:
        expected[overflow] = np.copysign(fmt.max_finite, expected[overflow]) if not fmt.has_nan else np.nan
    if not fmt.has_negative_zero:
        expected[expected == 0] = 0.0
    return expected


@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16"] + FP8_FP6_FP4)
def test_float64_rounding_is_correct_next_to_midpoints(name):
    """float64 values one ulp either side of a midpoint: where a cast through float32 double
    rounds (ml_dtypes' float64 -> bf16/fp8 casts did before 0.7: docs/upstream.md), ours must not."""
    fmt = FORMATS[name]
    rng = np.random.default_rng(1)
    base = fmt.round_to_float64(rng.standard_normal(3000) * np.exp2(rng.integers(-12, 12, 3000)))
    midpoints = base + fmt.ulp(base) / 2
    candidates = np.concatenate([midpoints, np.nextafter(midpoints, np.inf), np.nextafter(midpoints, -np.inf),
                                 np.exp2(rng.uniform(fmt.emin - fmt.precision - 1, fmt.emin + 1, 500))])
    ours = fmt.round_to_float64(candidates)
    expected = _overflow_convention(np.array([_mpmath_rne(float(v), fmt) for v in candidates]), fmt)
    assert same_values(ours, expected)


@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16"] + FP8_FP6_FP4)
def test_rounding_exact_numbers(name):
    """mpmath and dyadic inputs round like their float64 values when those are exact."""
    fmt = FORMATS[name]
    rng = np.random.default_rng(2)
    values = rng.standard_normal(200) * 3
    expected = fmt.round_to_float64(values)
    as_mpf = np.array([mpmath.mpf(float(v)) for v in values], dtype=object)
    assert same_values(fmt.round(as_mpf).astype(np.float64), expected)
    for v, e in zip(values, expected):
        man, exp = math.frexp(v)
        integer = int(man * 2**53)
        # round_dyadic reports overflow as ±inf; round_to_float64 applies the format's convention
        assert same_values(fmt.round_to_float64(round_dyadic(integer, exp - 53, fmt)), e)


@pytest.mark.parametrize("name", ["fp32", "fp16"])
def test_ulp_matches_numpy_spacing(name):
    fmt = FORMATS[name]
    dtype = np.float32 if name == "fp32" else np.float16
    with np.errstate(over="ignore"):
        values = np.abs(random_fp32(10000).astype(dtype))
    values = values[np.isfinite(values) & (values < fmt.max_finite)]
    assert np.array_equal(fmt.ulp(values.astype(np.float64)), np.spacing(values).astype(np.float64))


# ---- torch: detect the cast semantics, then compare ---------------------------------------
torch = pytest.importorskip("torch")

TORCH_DTYPES = {
    "fp16": torch.float16, "bf16": torch.bfloat16,
    "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2,
    "fp8_e4m3fnuz": torch.float8_e4m3fnuz, "fp8_e5m2fnuz": torch.float8_e5m2fnuz,
}  # torch has no fp6, and fp4 only packed two per byte (float4_e2m1fn_x2) without casts


def torch_saturates(target: str, device: str = "cpu") -> bool:
    """Probe: does torch's cast send finite overflow to the largest finite value?"""
    largest_fp32 = float(np.finfo(np.float32).max)  # beyond every narrower format's range
    probe = torch.tensor([largest_fp32], dtype=torch.float32, device=device).to(TORCH_DTYPES[target]).float().item()
    return math.isfinite(probe)


def torch_cast(values32: np.ndarray, target: str, device: str = "cpu") -> np.ndarray:
    tensor = torch.from_numpy(values32).to(device)
    return tensor.to(TORCH_DTYPES[target]).to(torch.float64).cpu().numpy()


def _compare_with_torch(values32, target, device="cpu"):
    fmt = FORMATS[target]
    saturate = torch_saturates(target, device)
    ours = fmt.round_to_float64(values32.astype(np.float64), saturate=saturate)
    theirs = torch_cast(values32, target, device)
    assert same_values(ours, theirs), (target, device, "saturating" if saturate else "non-saturating")


@pytest.mark.parametrize("source,target", [(s, t) for s in NARROWER for t in NARROWER[s] if t in TORCH_DTYPES])
def test_round_agrees_with_torch_cast_on_every_16_bit_input(source, target):
    _compare_with_torch(all_as_float32(source), target)


@pytest.mark.parametrize("target", list(TORCH_DTYPES))
def test_round_agrees_with_torch_cast_on_random_fp32(target):
    _compare_with_torch(random_fp32(2**20, seed=3), target)


@pytest.mark.gpu
@pytest.mark.parametrize("target", list(TORCH_DTYPES))
def test_round_agrees_with_torch_cuda_cast(target):
    values = np.concatenate([random_fp32(2**20, seed=4), all_as_float32("bf16")])
    _compare_with_torch(values, target, device="cuda")


def test_boundaries_of_the_new_formats():
    e4z, e5z = FORMATS["fp8_e4m3fnuz"], FORMATS["fp8_e5m2fnuz"]
    e2m3, e3m2, e2m1 = FORMATS["fp6_e2m3fn"], FORMATS["fp6_e3m2fn"], FORMATS["fp4_e2m1fn"]
    # 248 is the midpoint of 240 and 256; ties to even go to 256 = overflow -> NaN (no inf)
    assert same_values(e4z.round_to_float64([247.0, 248.0, -np.inf, -1e-30, -0.0]), [240.0, np.nan, np.nan, 0.0, 0.0])
    assert same_values(e4z.round_to_float64([248.0, -np.inf], saturate=True), [240.0, -240.0])
    assert same_values(e5z.round_to_float64([61439.0, 61440.0]), [57344.0, np.nan])
    # no inf and no NaN: overflow saturates whatever `saturate` says; a NaN stays NaN (no value)
    assert same_values(e2m3.round_to_float64([7.74, 7.76, np.inf, -1e9, np.nan]), [7.5, 7.5, 7.5, -7.5, np.nan])
    assert same_values(e3m2.round_to_float64([30.0, 0.03125, 0.03126]), [28.0, 0.0, 0.0625])
    assert same_values(e2m1.round_to_float64([0.25, 0.26, 2.5, 5.0, -100.0, -0.1]), [0.0, 0.5, 2.0, 4.0, -6.0, -0.0])


def test_the_scale_format_is_not_a_value_format():
    from normtheory.errors import UsageError
    from normtheory.formats import get_format

    with pytest.raises(UsageError, match="block-scale format"):
        get_format("fp8_e8m0fnu")
    with pytest.raises(UsageError, match="unknown format"):
        get_format("fp8_e3m4")
