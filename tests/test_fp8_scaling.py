"""Scaled quantization (precision/lowprecision/scaling.py): recipes, amax edge cases, MX, double rounding,
and the torch compositions (kernels/fp8_output.py) against the numpy emulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from normtheory.errors import UsageError
from normtheory.formats import FORMATS
from normtheory.precision.lowprecision.scaling import (
    FP32_MAX,
    FP32_MIN_NORMAL,
    DelayedScaling,
    cast_through,
    group_amax,
    mx_shared_exponent,
    parse_scaling,
    quantize,
    scale_from_amax,
)

E4, E5 = FORMATS["fp8_e4m3fn"], FORMATS["fp8_e5m2"]
U32 = FORMATS["fp32"].unit_roundoff


def fp32_rows(rows=8, n=96, seed=0, spread=3.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n)) * np.exp(rng.uniform(-spread, spread, (rows, 1)))
    return FORMATS["fp32"].round_to_float64(x)


@pytest.mark.parametrize("text,parsed", [("tensor", ("tensor", None)), ("row", ("row", None)),
                                         ("delayed", ("delayed", None)), ("block:16", ("block", 16)),
                                         ("mx", ("mx", 32)), ("mx:64", ("mx", 64))])
def test_parse_scaling(text, parsed):
    assert parse_scaling(text) == parsed


@pytest.mark.parametrize("bad", ["block", "block:0", "block:x", "tensor:3", "blocks:4", ""])
def test_parse_scaling_refuses(bad):
    with pytest.raises(UsageError, match="unknown scaling"):
        parse_scaling(bad)


@pytest.mark.parametrize("fmt", [E4, E5, FORMATS["fp8_e4m3fnuz"]])
@pytest.mark.parametrize("scaling", ["tensor", "row", "block:32", "block:40"])
def test_current_scaling_maps_each_group_amax_to_the_top_of_the_range(fmt, scaling):
    y = fp32_rows()
    q = quantize(y, fmt, scaling)
    kind, block = parse_scaling(scaling)
    amax = group_amax(y, kind, block)
    # s = fl32(fmax/amax): s·amax is within one fp32 rounding of fmax
    assert np.all(np.abs(q.scale * amax / fmt.max_finite - 1) <= U32)
    assert np.all(np.abs(q.values) <= fmt.max_finite)
    assert np.all(group_amax(q.values, kind, block) >= fmt.max_finite * (1 - 2 * fmt.unit_roundoff))
    assert q.scale.shape == np.shape(amax)


def test_amax_edge_cases():
    fmax = E4.max_finite
    zeros = quantize(np.zeros((2, 8)), E4, "tensor")
    assert zeros.scale == 1.0 and not zeros.values.any()
    tiny = np.full((1, 4), 2.0**-149)  # fmax/amax = 448·2^149 overflows fp32: TE clamps the scale
    assert quantize(tiny, E4, "tensor").scale == FP32_MAX
    assert scale_from_amax(1.0, E4, margin=200) == FP32_MIN_NORMAL  # never 0 or subnormal
    with_nan = np.array([[1.0, np.nan, 2.0]])
    q = quantize(with_nan, E4, "tensor")
    assert q.scale == 1.0 and np.isnan(q.values[0, 1]) and q.values[0, 2] == 2.0
    with_inf = np.array([[1.0, np.inf, -2.0]])
    q = quantize(with_inf, E4, "tensor", saturate=True)
    assert q.scale == 1.0 and q.values[0, 1] == fmax
    assert np.isinf(quantize(with_inf, E5, "tensor", saturate=False).values[0, 1])
    assert scale_from_amax(np.nan, E4, previous=7.0) == 7.0
    # power-of-two scales are exact powers of two at or below the plain scale
    s = scale_from_amax(3.0, E4, power_of_two=True)
    assert s == 128.0 and s <= scale_from_amax(3.0, E4)


def test_mx_scaling_follows_the_ocp_rule():
    """Per block: X = 2^(floor(log2 amax) − emax), so amax/X ∈ [2^emax, 2^(emax+1)), checked
    with math.frexp per block, independently of the vectorized code."""
    y = fp32_rows(n=80, seed=3)
    for name in ("fp8_e4m3fn", "fp8_e5m2", "fp6_e2m3fn", "fp6_e3m2fn", "fp4_e2m1fn"):
        fmt = FORMATS[name]
        q = quantize(y, fmt, "mx")
        assert q.scale.shape == (8, 3)  # ceil(80/32) blocks per row
        for r in range(8):
            for k in range(3):
                block = y[r, 32 * k:32 * (k + 1)]
                amax = float(np.max(np.abs(block)))
                X = 1.0 / q.scale[r, k]
                assert 2.0**fmt.emax <= amax / X < 2.0**(fmt.emax + 1)
                assert math.log2(X) == math.frexp(amax)[1] - 1 - fmt.emax
                expected = fmt.round_to_float64(block / X, saturate=True)
                assert np.array_equal(q.values[r, 32 * k:32 * (k + 1)], expected)
        codes = q.e8m0_codes()
        assert np.array_equal(codes.astype(int) - 127, -np.log2(q.scale))
    assert mx_shared_exponent(0.0, E4) == -127 and np.isnan(mx_shared_exponent(np.inf, E4))


def test_double_rounding_through_bf16():
    """fp32 → bf16 → e4m3 is not fp32 → e4m3: 1 + 2^-4 + 2^-12 rounds to 1.0625 in bf16, a tie
    that e4m3 sends down to 1, while the direct cast sees it above the midpoint and goes up."""
    x = np.array([1 + 2.0**-4 + 2.0**-12])
    assert cast_through(x, ["bf16", "fp8_e4m3fn"])[0] == 1.0
    assert cast_through(x, ["fp8_e4m3fn"])[0] == 1.125
    bits = np.random.default_rng(4).integers(0, 2**32, size=2**16, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values) & (np.abs(values) < 400)].astype(np.float64)
    differ = cast_through(values, ["bf16", "fp8_e4m3fn"]) != cast_through(values, ["fp8_e4m3fn"])
    assert 0 < differ.mean() < 0.05
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(values.astype(np.float32))
    via_torch = t.to(torch.bfloat16).to(torch.float8_e4m3fn).double().numpy()
    assert np.array_equal(via_torch, cast_through(values, ["bf16", "fp8_e4m3fn"], saturate=True))


def test_delayed_scaling_uses_the_history_and_can_overflow():
    state = DelayedScaling(E5, history_len=4)
    first = state.quantize(np.full((1, 4), 100.0))
    assert first.scale == 1.0  # empty history
    second = state.quantize(np.full((1, 4), 100.0))
    assert second.scale == scale_from_amax(100.0, E5)
    # a 10x jump beyond the history: the scale from history overflows the format
    jump = state.quantize(np.full((1, 4), 1000.0), saturate=False)
    assert np.all(np.isinf(jump.values))
    state_sat = DelayedScaling(E5, history_len=4)
    for _ in range(2):
        state_sat.quantize(np.full((1, 4), 100.0))
    assert np.all(state_sat.quantize(np.full((1, 4), 1000.0), saturate=True).values == E5.max_finite)
    # the history window: after 4 small steps the large amax has left it
    for _ in range(4):
        state_sat.quantize(np.full((1, 4), 1.0))
    assert state_sat.scale == scale_from_amax(1.0, E5)


# ---- the torch compositions against the emulation -----------------------------------------
torch = pytest.importorskip("torch")
from normtheory.kernels.fp8_output import layer_norm_fp8, rms_norm_fp8, scaled_fp8_cast  # noqa: E402

TORCH = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2, "fp8_e4m3fnuz": torch.float8_e4m3fnuz}


@pytest.mark.parametrize("name", list(TORCH))
@pytest.mark.parametrize("scaling", ["tensor", "row", "block:16", "block:40", "mx"])
def test_torch_scaled_cast_matches_the_emulation(name, scaling):
    from normtheory.kernels.fp8_probe import probe_cast

    y = fp32_rows(seed=5)
    q_torch, s_torch = scaled_fp8_cast(torch.from_numpy(y.astype(np.float32)), scaling=scaling, out_dtype=TORCH[name])
    saturate = probe_cast(name).saturates
    q = quantize(y, name, scaling, saturate=saturate)
    assert np.array_equal(s_torch.double().numpy(), q.scale)
    ours = q.values
    theirs = q_torch.double().numpy()
    assert np.array_equal(np.isnan(ours), np.isnan(theirs)) and np.array_equal(ours[~np.isnan(ours)], theirs[~np.isnan(theirs)])


def test_torch_delayed_scaling_matches_the_emulation():
    history = torch.zeros(3)
    state = DelayedScaling(E4, history_len=3)
    rng = np.random.default_rng(6)
    for step in range(6):
        y = FORMATS["fp32"].round_to_float64(rng.standard_normal((4, 32)) * 10.0 ** (step % 3))
        q_torch, s_torch = scaled_fp8_cast(torch.from_numpy(y.astype(np.float32)), scaling="delayed", amax_history=history)
        q = state.quantize(y, saturate=True)
        assert float(s_torch) == float(q.scale), step
        assert np.array_equal(q_torch.double().numpy(), q.values), step


@pytest.mark.parametrize("kernel", [rms_norm_fp8, layer_norm_fp8])
def test_norm_fp8_kernels_return_values_and_scale(kernel):
    x = torch.from_numpy(fp32_rows(seed=7).astype(np.float32))
    w = torch.linspace(0.5, 2.0, x.shape[1])
    y8, scale = kernel(x, w, torch.zeros(x.shape[1]), 1e-5, scaling="row")
    assert y8.dtype == torch.float8_e4m3fn and scale.shape == (x.shape[0], 1)
    assert float(y8.float().abs().max()) == 448.0  # the row amax lands on fmax (within fp32)


@pytest.mark.parametrize("mid,target", [("bf16", "fp8_e4m3fn"), ("fp16", "fp8_e4m3fn"), ("bf16", "fp8_e5m2"),
                                        ("fp16", "fp8_e5m2")])
def test_double_rounding_rate_matches_its_derivation(mid, target):
    """For significands uniform in a binade (random fp32 bits), the intermediate rounding lands
    on a midpoint of the target with probability 2^-(p_mid − p_t) (one intermediate grid point
    in 2^(p_mid − p_t) is a midpoint), and the tie then goes the other way than the direct
    rounding in half of those cases: rate 2^-(p_mid − p_t + 1). Binomial check at Z = 5."""
    mid_fmt, target_fmt = FORMATS[mid], FORMATS[target]
    bits = np.random.default_rng(4).integers(0, 2**32, size=2**20, dtype=np.uint64).astype(np.uint32)
    v = bits.view(np.float32)
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(v) & (np.abs(v) <= target_fmt.max_finite) & (np.abs(v) >= target_fmt.min_normal)
    x = v[keep].astype(np.float64)
    rate = 2.0 ** -(mid_fmt.precision - target_fmt.precision + 1)
    differ = np.count_nonzero(cast_through(x, [mid, target]) != cast_through(x, [target]))
    assert abs(differ - rate * x.size) <= 5 * np.sqrt(x.size * rate * (1 - rate)), (differ, rate * x.size)


@pytest.mark.parametrize("case", ["zeros", "tiny", "nan", "inf", "big_margin", "fp32_max"])
@pytest.mark.parametrize("scaling", ["tensor", "row", "block:4", "mx"])
def test_torch_and_emulation_agree_on_amax_edge_cases(case, scaling):
    from normtheory.kernels.fp8_probe import probe_cast

    y = np.array([[1.0, -2.0, 0.5, 3.0, 0.25, 0.0, -1.0, 7.0]])
    margin = 0
    if case == "zeros":
        y[:] = 0.0
    elif case == "tiny":
        y = y * 2.0**-146  # fp32 subnormals: fmax/amax overflows fp32
    elif case == "nan":
        y[0, 1] = np.nan
    elif case == "inf":
        y[0, 3] = -np.inf
    elif case == "big_margin":
        margin = 140  # the scale would be subnormal in fp32: clamped to the smallest normal
    else:
        y[0, 0] = float(np.finfo(np.float32).max)
    y = FORMATS["fp32"].round_to_float64(y)
    q_t, s_t = scaled_fp8_cast(torch.from_numpy(y.astype(np.float32)), scaling=scaling, margin=margin)
    q = quantize(y, E4, scaling, margin=margin, saturate=probe_cast("fp8_e4m3fn").saturates)
    same_scale = np.array_equal(s_t.double().numpy(), q.scale, equal_nan=True)
    assert same_scale, (s_t, q.scale)
    assert np.array_equal(q_t.double().numpy(), q.values, equal_nan=True)
