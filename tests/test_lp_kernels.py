"""The naive Lp kernel overflows where lp_thresholds predicts; the stable one never fails and
stays within its a-priori bound (precision/bounds/lp.py) over the whole finite range of fp16, bf16
and fp32, judged against the arbitrary-precision reference."""

import math

import numpy as np
import pytest
import torch

from normtheory.formats import FORMATS
from normtheory.kernels.lp import lp_norm_naive, lp_norm_stable
from normtheory.reference import correctly_rounded
from normtheory.theory.lp.measure import (
    TORCH_DTYPES,
    fails_on_constant_row,
    largest_failing_magnitude,
    run_kernel,
    smallest_failing_magnitude,
    stable_error_survey,
)
from normtheory.theory.lp.thresholds import (
    floor_is_lost,
    naive_failures,
    naive_overflow_abs,
    naive_overflow_prediction,
    overflow_margin,
    term_underflow_abs,
)

EPS = 1e-6
FORMAT_NAMES = ("fp16", "bf16", "fp32")
OVERFLOW_PS = (2, 3, 4, 8)


def _next_up(value, fmt):
    bits = FORMATS[fmt].to_bits(np.array([value]))
    return float(FORMATS[fmt].to_float64(FORMATS[fmt].from_bits(bits + 1))[0])


def _check_threshold(measured, p, d, fmt, acc):
    """measured: smallest failing constant-row magnitude. Predicted: (F/d)^(1/p); the computed
    sum is within a relative overflow_margin of the exact one, which brackets the threshold."""
    predicted = naive_overflow_abs(p, d, acc)
    top = FORMATS[fmt].max_finite
    if predicted >= top * 2:  # beyond the input format (by a binade): nothing may fail
        assert measured is None, f"{fmt} p={p} d={d}: failed at {measured}, predicted none below {top}"
        return
    assert measured is not None, f"{fmt} p={p} d={d}: predicted overflow at {predicted}, none found"
    assert predicted / 2 <= measured <= predicted * 2  # the requirement: one binade
    margin = overflow_margin(d, acc)
    assert measured >= predicted * (1 + margin) ** (-1 / p)
    assert measured <= _next_up(min(predicted * (1 + margin) ** (1 / p), top), fmt)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize("p", OVERFLOW_PS)
@pytest.mark.parametrize("d", (64, 1024))
def test_naive_kernel_overflows_where_predicted_with_fp32_accumulation(fmt, p, d):
    measured = smallest_failing_magnitude(lp_norm_naive, d, fmt, EPS, p, low=1.0)
    _check_threshold(measured, p, d, fmt, "fp32")


@pytest.mark.parametrize("p", OVERFLOW_PS)
@pytest.mark.parametrize("d", (64, 1024))
def test_naive_kernel_overflows_where_predicted_with_fp16_accumulation(p, d):
    # fp16 data in an fp32 accumulator overflows only for p = 8; an fp16 accumulator overflows
    # for every p, at (65504/d)^(1/p)
    measured = smallest_failing_magnitude(lp_norm_naive, d, "fp16", EPS, p, low=1.0, acc_dtype=torch.float16)
    _check_threshold(measured, p, d, "fp16", "fp16")


@pytest.mark.parametrize("p", (3, 4, 8))
def test_naive_kernel_with_fp16_accumulation_underflows_where_predicted(p):
    """eps^(p/2) = 1e-9, 1e-12, 1e-24 is below half fp16's smallest subnormal (2^-25): the
    floor is lost, and once every |x|^p rounds to 0 (|x| ≤ 2^(-25/p)) t = 0 and y = x/0."""
    assert floor_is_lost(p, EPS, "fp16")
    measured = largest_failing_magnitude(lp_norm_naive, 64, "fp16", EPS, p, high=1.0, acc_dtype=torch.float16)
    predicted = term_underflow_abs(p, "fp16")
    assert measured is not None and predicted / 2 <= measured <= predicted * 2
    # the stable kernel has no such gap, and neither has the naive one when the floor survives
    assert largest_failing_magnitude(lp_norm_stable, 64, "fp16", EPS, p, high=1.0) is None
    assert not floor_is_lost(2, EPS, "fp16")
    assert largest_failing_magnitude(lp_norm_naive, 64, "fp16", EPS, 2, high=1.0, acc_dtype=torch.float16) is None


def test_the_threshold_check_rejects_a_prediction_that_forgets_the_width():
    """The same check, fed a wrong predictor (the largest single |x| before |x|^p overflows,
    F^(1/p), which ignores the sum over d entries), must fail."""
    d, p = 1024, 8
    measured = smallest_failing_magnitude(lp_norm_naive, d, "fp32", EPS, p, low=1.0)
    wrong = FORMATS["fp32"].max_finite ** (1 / p)
    assert not (wrong / 2 <= measured <= wrong * 2)
    assert naive_overflow_abs(p, d) / 2 <= measured <= naive_overflow_abs(p, d) * 2


@pytest.mark.parametrize("fmt", ("bf16", "fp32"))
@pytest.mark.parametrize("p", OVERFLOW_PS)
def test_overflow_prediction_follows_the_input_not_only_its_maximum(fmt, p):
    """Random directions of different shapes (Gaussian, spiky, one-hot) scaled over several
    binades around the threshold: the kernel fails exactly on the rows predicted to overflow."""
    rng = np.random.default_rng(p)
    d = 256
    directions = [rng.standard_normal(d), rng.standard_cauchy(d), np.eye(d)[3]]
    rows = []
    for direction in directions:
        direction = direction / np.abs(direction).max()
        centre = naive_overflow_abs(p, 1) / float(np.sum(np.abs(direction) ** p)) ** (1 / p)
        for shift in np.linspace(-3, 3, 41):
            rows.append(direction * min(centre * 2.0**shift, FORMATS[fmt].max_finite))
    x = FORMATS[fmt].round_to_float64(np.array(rows))
    predicted = naive_overflow_prediction(x, p)
    failed = naive_failures(run_kernel(lp_norm_naive, x, fmt, EPS, p), x)
    decided = predicted != 0
    assert decided.sum() >= 0.9 * len(rows)
    assert (failed[decided] == (predicted[decided] == 1)).all()
    assert failed.any() and (~failed).any()
    # a predictor that uses the row maximum alone (d·max^p) calls many safe rows unsafe
    wrong = np.log2(x.shape[1]) + p * np.log2(np.abs(x).max(axis=1)) > math.log2(FORMATS["fp32"].max_finite)
    assert (wrong != failed).any()


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize("p", OVERFLOW_PS + (1, 1.5, math.inf))
def test_stable_kernel_never_fails_on_constant_rows(fmt, p):
    assert smallest_failing_magnitude(lp_norm_stable, 1024, fmt, EPS, p) is None
    assert not fails_on_constant_row(lp_norm_stable, FORMATS[fmt].max_finite, 4096, fmt, EPS, p)


# The survey judges every row against the exact value: |ŷ − y| ≤ bound (precision/bounds/lp.py).
SURVEY_STEP = {"fp16": 1, "bf16": 4, "fp32": 4}  # every binade of fp16, every 4th of the others


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize("p", (1, 1.5, 2, 3, 4, 8, math.inf))
def test_stable_kernel_error_is_within_its_bound_over_the_whole_finite_range(fmt, p):
    survey = stable_error_survey(lp_norm_stable, fmt, p, 64, EPS, step=SURVEY_STEP[fmt], seed=11)
    assert survey["nonfinite_rows"] == 0
    assert survey["infinite_bounds"] == 0
    assert survey["max_err_over_bound"] <= 1.0, survey


@pytest.mark.parametrize("p", (1.5, 3))
def test_stable_kernel_with_weight_and_bias_is_within_its_bound(p):
    survey = stable_error_survey(lp_norm_stable, "bf16", p, 32, EPS, step=8, seed=3, affine="weight_bias")
    assert survey["nonfinite_rows"] == 0 and survey["max_err_over_bound"] <= 1.0, survey


def _stable_with_bf16_root(x, weight, bias, eps, p):
    """A deliberately wrong variant: the stable kernel with t rounded to bf16 before the root."""
    t_rounding = lambda t: t.to(torch.bfloat16).to(torch.float32)  # noqa: E731
    xa = x.to(torch.float32)
    floor_root = torch.tensor(math.sqrt(eps), dtype=torch.float32)
    scale = torch.maximum(xa.abs().amax(dim=-1, keepdim=True), floor_root)
    scaled = xa / scale
    t = (scaled.abs() ** p).sum(dim=-1, keepdim=True) / x.shape[-1] + (floor_root / scale) ** p
    return (scaled / t_rounding(t) ** (1.0 / p)).to(x.dtype)


@pytest.mark.parametrize("kernel", (_stable_with_bf16_root, lp_norm_naive))
def test_the_survey_detects_a_kernel_outside_the_bound(kernel):
    survey = stable_error_survey(kernel, "fp32", 3, 64, EPS, step=6, seed=5)
    assert survey["max_err_over_bound"] > 1.0


def test_zero_rows_and_eps():
    zero = torch.zeros(2, 16)
    for p in (1, 3, math.inf):
        assert torch.isnan(lp_norm_stable(zero, None, None, 0.0, p)).all()  # 0/0, like the reference
        assert (lp_norm_stable(zero, None, None, EPS, p) == 0).all()
    # below the floor the output is x/√eps in both kernels (the reference agrees)
    x = FORMATS["fp32"].round_to_float64(np.random.default_rng(0).standard_normal((2, 16)) * 1e-9)
    reference = correctly_rounded("lpnorm", x, format="fp32", eps=EPS, p=3, affine="none")["y"]
    for kernel in (lp_norm_stable, lp_norm_naive):
        got = run_kernel(kernel, x, "fp32", EPS, 3).astype(np.float32)
        np.testing.assert_allclose(got, reference, rtol=8 * FORMATS["fp32"].unit_roundoff)


def test_naive_kernel_loses_the_floor_where_predicted():
    # eps^(p/2) underflows in fp32 for p ≥ 2 ln(2^-150)/ln(eps) ≈ 15.05 at eps = 1e-6
    assert not floor_is_lost(12, EPS) and floor_is_lost(16, EPS)
    zero = torch.zeros(1, 8)
    assert torch.isnan(lp_norm_naive(zero, None, None, EPS, 16)).all()
    assert (lp_norm_naive(zero, None, None, EPS, 12) == 0).all()
    assert (lp_norm_stable(zero, None, None, EPS, 16) == 0).all()


def test_max_norm_kernels_agree_and_keep_the_dtype():
    x = torch.randn(3, 32).to(torch.bfloat16)
    for kernel in (lp_norm_naive, lp_norm_stable):
        y = kernel(x, torch.ones(32, dtype=torch.bfloat16), None, EPS, "inf")
        assert y.dtype == torch.bfloat16
    assert torch.equal(lp_norm_naive(x, None, None, EPS, math.inf), lp_norm_stable(x, None, None, EPS, math.inf))
    assert set(TORCH_DTYPES) >= set(FORMAT_NAMES)
