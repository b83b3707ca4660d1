"""Overflow/underflow domains match what the emulated kernels do, as functions of d."""

import numpy as np
import pytest

from normtheory.formats import FORMATS
from normtheory.precision.arith import Arith
from normtheory.precision.domains import (domain_table, eps_collapse_threshold, overflow_threshold,
                                          square_underflow_threshold)
from normtheory.precision.emulate import forward, statistic
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
    beyond = acc.round_to_float64(np.full((1, n), limit * 2.2) * signs)
    d = n + 1 if op == "crmsnorm" else n
    assert np.isfinite(statistic(op, at, ar, model, d)[1]).all()
    assert not np.isfinite(statistic(op, beyond, ar, model, d)[1]).all()


def test_overflow_threshold_shrinks_like_one_over_sqrt_d():
    rows = domain_table("rmsnorm", MODELS["fp16_accum"], [64, 256, 1024, 4096], eps=1e-6)
    ratios = [rows[i]["overflow_abs"] / rows[i + 1]["overflow_abs"] for i in range(3)]
    np.testing.assert_allclose(ratios, 2.0, rtol=1e-12)  # quadrupling d halves the threshold
    # fp16 accumulation of 4096 squares overflows for |x| above ~4 (65504/4096 = 16 = 4²)
    assert 3.9 < rows[-1]["overflow_abs"] < 4.0


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
