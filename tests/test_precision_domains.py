"""Overflow/underflow domains match what the emulated kernels do, as functions of d."""

import numpy as np
import pytest

from normtheory.formats import FORMATS
from normtheory.precision.bounds.domains import (
    domain_table,
    eps_collapse_threshold,
    overflow_threshold,
    rounding_margin,
    square_underflow_threshold,
)
from normtheory.precision.emulation.arith import Arith
from normtheory.precision.emulation.forward import forward, statistic
from normtheory.precision.models import MODELS


@pytest.mark.parametrize("model_name,op", [("fp16_accum", "rmsnorm"), ("fp16_accum", "layernorm"),
                                           ("default", "rmsnorm"), ("default", "crmsnorm"),
                                           ("onepass", "layernorm")])
@pytest.mark.parametrize("n", [16, 1024])
def test_statistic_is_finite_at_the_threshold_and_overflows_beyond(model_name, op, n):
    model = MODELS[model_name]
    acc = FORMATS[model.acc]
    ar = Arith(acc)
    limit = overflow_threshold(op, model, n)
    # the worst case of the derivation: every entry at the same magnitude (alternating signs
    # for two-pass LayerNorm, whose centred entries are then ±X)
    signs = np.where(np.arange(n) % 2 == 0, 1.0, -1.0) if op == "layernorm" and model.stats != "one_pass" else 1.0
    at = acc.round_to_float64(np.full((1, n), limit * (1 - 4 * acc.unit_roundoff)) * signs)
    # beyond: past the exact overflow point, whatever the rounding margin (1 + u)^m took off
    beyond = acc.round_to_float64(np.full((1, n), limit * 2.2 * np.sqrt(rounding_margin(model, n))) * signs)
    d = n + 1 if op == "crmsnorm" else n
    assert np.isfinite(statistic(op, at, ar, model, d)[1]).all()
    assert not np.isfinite(statistic(op, beyond, ar, model, d)[1]).all()


def test_overflow_threshold_shrinks_like_one_over_sqrt_d():
    model = MODELS["fp16_accum"]
    widths = [64, 256, 1024, 4096]
    rows = domain_table("rmsnorm", model, widths, eps=1e-6)
    # without the rounding margin, quadrupling d halves the threshold
    unmargined = [row["overflow_abs"] * np.sqrt(rounding_margin(model, d)) for row, d in zip(rows, widths)]
    np.testing.assert_allclose([unmargined[i] / unmargined[i + 1] for i in range(3)], 2.0, rtol=1e-12)
    # fp16 accumulation of 4096 squares: 65504/4096 = 16 = 4² exactly, less the margin of a
    # sequential sum (4099 roundings: (1 + 2^-11)^4099 ≈ e², so the threshold is ≈ 4/e)
    assert unmargined[-1] == pytest.approx(np.sqrt(65504 / 4096), rel=1e-12)
    assert 1.4 < rows[-1]["overflow_abs"] < 1.5


def test_a_rounded_up_sum_of_squares_below_the_exact_overflow_point_gets_no_bound():
    """Found by the soundness search: 43 entries of 39 in fp16 have Σx² = 65403 < 65504, but
    the sequential fp16 sum rounds up to inf; the threshold must leave room for that."""
    from normtheory.precision.bounds.forward import forward_bound

    model, x = MODELS["fp16_accum"], np.full((1, 43), 39.0)
    ar = Arith(FORMATS["fp16"])
    assert not np.isfinite(statistic("rmsnorm", x, ar, model, 43)[1]).all()
    assert overflow_threshold("rmsnorm", model, 43) < 39.0
    assert np.isinf(forward_bound("rmsnorm", x, model=model, eps=1e-5).total).all()


def test_squares_underflow_below_the_threshold():
    model = MODELS["default"]
    ar = Arith("fp32")
    t = square_underflow_threshold(model)
    below = np.array([[t / 2] * 4])
    above = np.array([[t * 4] * 4])
    assert statistic("rmsnorm", below, ar, model, 4)[1][0] == 0.0
    assert statistic("rmsnorm", above, ar, model, 4)[1][0] > 0.0


def test_below_the_eps_collapse_rms_the_output_is_x_over_sqrt_eps():
    model, eps = MODELS["two_pass_pairwise"], 1e-5
    rms = eps_collapse_threshold(model, eps) / 8
    x = FORMATS["fp32"].round_to_float64(np.random.default_rng(0).standard_normal((1, 64)) * rms)
    y = forward("rmsnorm", x, model=model, eps=eps, out_format="fp32")
    np.testing.assert_allclose(y, x / np.sqrt(np.float32(eps)), rtol=4 * 2.0**-24)
