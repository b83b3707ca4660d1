"""The error bound of a normalizer with a scaled fp8 output (precision/lowprecision/scaled_bound.py) holds for
the torch compositions under every recipe, and the same check flags wrong kernels."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from normtheory.formats import FORMATS  # noqa: E402
from normtheory.kernels.fp8_output import layer_norm_fp8, rms_norm_fp8  # noqa: E402
from normtheory.kernels.fp8_probe import probe_cast  # noqa: E402
from normtheory.precision.lowprecision.scaled_bound import scaled_output_bound  # noqa: E402
from normtheory.precision.lowprecision.scaling import expand_scale, fp8_output_bound, parse_scaling, scale_interval  # noqa: E402
from normtheory.precision.measure import as_float64, exact_outputs  # noqa: E402

TORCH = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2, "fp8_e4m3fnuz": torch.float8_e4m3fnuz}
OPS = {"rmsnorm": (rms_norm_fp8, "weight"), "layernorm": (layer_norm_fp8, "weight_bias")}
EPS = 1e-5


def inputs(rows=6, n=64, seed=0):
    rng = np.random.default_rng(seed)
    fp32 = FORMATS["fp32"]
    x = rng.standard_normal((rows, n)) * np.exp(rng.uniform(-4, 4, (rows, 1))) + rng.uniform(-2, 2, (rows, 1))
    x[0, :5] = 0.0  # zeros inside a row
    w = fp32.round_to_float64(rng.uniform(0.25, 3.0, n))
    b = fp32.round_to_float64(rng.uniform(-1, 1, n))
    return fp32.round_to_float64(x), w, b


_EXACT = {}


def exact(op, x, w, b, affine):
    key = (op, x.tobytes(), affine)
    if key not in _EXACT:
        _EXACT[key] = as_float64(exact_outputs(op, x, w, b, eps=EPS, affine=affine)["y"])
    return _EXACT[key]


def run(kernel, x, w, b, affine, **scaled):
    t = lambda a: torch.from_numpy(a.astype(np.float32))  # noqa: E731
    y8, scale = kernel(t(x), t(w), t(b) if affine == "weight_bias" else None, EPS, **scaled)
    return y8.double().numpy(), scale.double().numpy()


def dequantized_error(q, scale, y_exact, scaling):
    kind, block = parse_scaling(scaling)
    with np.errstate(invalid="ignore"):
        return np.abs(q / expand_scale(scale, q.shape, kind, block) - y_exact)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("name", list(TORCH))
@pytest.mark.parametrize("scaling", ["tensor", "row", "block:16", "mx"])
def test_bound_holds(op, name, scaling):
    kernel, affine = OPS[op]
    x, w, b = inputs()
    y = exact(op, x, w, b, affine)
    q, scale = run(kernel, x, w, b, affine, scaling=scaling, out_dtype=TORCH[name])
    saturate = probe_cast(name).saturates
    bound = fp8_output_bound(op, x, w, b if affine == "weight_bias" else None, format="fp32", eps=EPS, affine=affine,
                             out_format=name, scale=scale, scaling=scaling, exact=y, saturate=saturate)
    err = dequantized_error(q, scale, y, scaling)
    assert np.isfinite(bound).all()
    worst = np.max(err / bound)
    assert worst <= 1.0, f"error/bound {worst:.3g}"
    assert worst > 0.05  # the bound is not vacuous: the worst entry uses a good part of it
    # the kernel's scale is one the recipe can give for an fp32 result within the pre-cast bound
    from normtheory.precision import tolerance
    pre = tolerance(op, x, w, b if affine == "weight_bias" else None, format="fp32", eps=EPS, affine=affine,
                    out_format="fp32", exact=y)
    low, high = scale_interval(y, pre, name, scaling)
    assert np.all((low <= scale) & (scale <= high))


def test_a_truncating_cast_is_caught():
    """The same check fails for a kernel that truncates instead of rounding to nearest."""
    x, w, b = inputs(rows=8, seed=1)
    y = exact("rmsnorm", x, w, b, "weight")
    q, scale = run(rms_norm_fp8, x, w, b, "weight", scaling="tensor")
    fmt = FORMATS["fp8_e4m3fn"]
    t = FORMATS["fp32"].round_to_float64(y * scale)  # the scaled values, then truncated (not RNE)
    ulp = fmt.ulp(t)
    truncated = np.trunc(t / ulp) * ulp
    bound = fp8_output_bound("rmsnorm", x, w, None, format="fp32", eps=EPS, affine="weight",
                             out_format="fp8_e4m3fn", scale=scale, exact=y)
    assert np.max(dequantized_error(truncated, scale, y, "tensor") / bound) > 1.0
    assert np.max(dequantized_error(q, scale, y, "tensor") / bound) <= 1.0


def test_a_kernel_whose_scale_is_off_by_two_is_caught():
    x, w, b = inputs(rows=4, seed=2)
    y = exact("rmsnorm", x, w, b, "weight")
    q, scale = run(rms_norm_fp8, x, w, b, "weight", scaling="row")
    bound = fp8_output_bound("rmsnorm", x, w, None, format="fp32", eps=EPS, affine="weight",
                             out_format="fp8_e4m3fn", scale=scale * 2, scaling="row", exact=y)
    assert np.max(dequantized_error(q, scale * 2, y, "row") / bound) > 1.0


def test_no_bound_where_a_non_saturating_cast_may_overflow():
    fmt = FORMATS["fp8_e5m2"]
    y = np.array([[1.0, 1000.0]])
    bound = scaled_output_bound(np.abs(y), np.zeros_like(y), np.full_like(y, 100.0), fmt, saturate=False)
    assert np.isfinite(bound[0, 0]) and np.isinf(bound[0, 1])  # 1000·100 > 57344 + half an ulp
    saturating = scaled_output_bound(np.abs(y), np.zeros_like(y), np.full_like(y, 100.0), fmt, saturate=True)
    # the saturated entry is off by (1000·100 − 57344)/100 and the bound covers it
    assert saturating[0, 1] >= (1000.0 * 100 - fmt.max_finite) / 100


@pytest.mark.parametrize("name", ["fp4_e2m1fn", "fp6_e2m3fn", "fp6_e3m2fn", "fp8_e4m3fn"])
def test_mx_saturation_error_is_within_the_bound(name):
    """MX's floor-based scale puts a block's amax in [2^emax, 2^(emax+1)), above fmax for every
    element format: those entries saturate. The bound's saturation term covers them."""
    from normtheory.precision.lowprecision.scaling import quantize

    fmt = FORMATS[name]
    rng = np.random.default_rng(8)
    y = FORMATS["fp32"].round_to_float64(rng.uniform(-1.4, 1.4, (16, 64)))
    y[:, 0] = 1.96  # amax/X = 1.96·2^emax > fmax in every block that holds it
    q = quantize(y, fmt, "mx")
    entry = expand_scale(q.scale, y.shape, "mx", 32)
    err = np.abs(q.dequantize() - y)
    bound = scaled_output_bound(np.abs(y), np.zeros_like(y), entry, fmt, saturate=True)
    assert np.all(err <= bound)
    saturated = np.abs(y * entry) > fmt.max_finite
    assert saturated[:, 0].all() and not saturated[:, 32:].any()  # only the first block holds 1.96
    assert np.max(err[saturated] / bound[saturated]) > 0.5  # the saturation term is what binds


def test_judge_passes_the_torch_kernels_and_fails_wrong_ones():
    from normtheory.precision.lowprecision.scaled_check import judge_scaled_output

    x, w, b = inputs(rows=4, seed=9)
    y = exact("layernorm", x, w, b, "weight_bias")
    common = dict(format="fp32", eps=EPS, affine="weight_bias", out_format="fp8_e4m3fn", exact=y, saturate=True)
    for scaling in ("tensor", "row", "block:16", "mx"):
        q, scale = run(layer_norm_fp8, x, w, b, "weight_bias", scaling=scaling)
        verdict = judge_scaled_output("layernorm", x, w, b, q, scale, scaling=scaling, **common)
        assert verdict.passed and verdict.scales_checked, (scaling, verdict.findings)
        # a kernel that halves the scale (dequantizes consistently, but wastes one bit of range)
        q_half, _ = run(layer_norm_fp8, x, w, b, "weight_bias", scaling=scaling)
        wrong = judge_scaled_output("layernorm", x, w, b, FORMATS["fp8_e4m3fn"].round_to_float64(q_half / 2),
                                    scale / 2, scaling=scaling, **common)
        assert not wrong.passed and wrong.bad_scales > 0, scaling
    q, scale = run(layer_norm_fp8, x, w, b, "weight_bias", scaling="tensor")
    delayed = judge_scaled_output("layernorm", x, w, b, q, scale, scaling="delayed", **common)
    assert delayed.passed and not delayed.scales_checked and "not checked" in delayed.findings[0]


@pytest.mark.slow
@pytest.mark.parametrize("scaling", ["tensor", "row"])
def test_compiled_kernels_are_within_the_bound(scaling):
    """torch.compile (inductor, CPU) fuses the composition; its output is judged by the same
    bound and scale check (not by equality with eager, which fusion need not keep)."""
    from normtheory.precision.lowprecision.scaled_check import judge_scaled_output

    x, w, b = inputs(rows=4, seed=10)
    y = exact("rmsnorm", x, w, b, "weight")
    compiled = torch.compile(rms_norm_fp8)
    q, scale = run(compiled, x, w, b, "weight", scaling=scaling)
    verdict = judge_scaled_output("rmsnorm", x, w, None, q, scale, format="fp32", eps=EPS, affine="weight",
                                  out_format="fp8_e4m3fn", scaling=scaling, exact=y, saturate=True)
    assert verdict.passed, verdict.findings


def test_scale_check_accepts_the_fallback_of_an_all_zero_block_and_rejects_a_wrong_one():
    """A zero block's amax is 0: the recipe keeps the fallback scale 1.0 (or, were the fp32 output
    tiny instead of 0, a huge scale); both are accepted (the check is the interval hull of the
    two). A block with a real amax gets a narrow interval: a scale of 3.0 is rejected there."""
    from normtheory.precision.lowprecision.scaling import scale_interval

    y = np.zeros((1, 64))
    y[0, 32:] = np.linspace(0.5, 2.0, 32)
    pre = np.full_like(y, 1e-7)
    low, high = scale_interval(y, pre, "fp8_e4m3fn", "block:32")
    assert high[0, 0] >= 448.0 / 1e-7 and low[0, 0] <= 1.0
    second = 448.0 / 2.0
    assert low[0, 1] <= second <= high[0, 1] and not (low[0, 1] <= 3.0 <= high[0, 1])
