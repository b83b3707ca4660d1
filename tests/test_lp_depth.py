"""Pre-Lp stacks in the Monte Carlo harness, and the mean-field band of theory/lp/depth.py."""

import math

import numpy as np
import pytest
import torch

from normtheory.theory.lp.depth import hidden_band_lp, judge_hidden, large_d_shape_constant, shape_constants
from normtheory.theory.meanfield import montecarlo as mc
from normtheory.theory.meanfield.predictions import block_gains


def test_lp_arch_names_round_trip_and_bad_names_are_refused():
    for p in (1.0, 1.5, 3.0, math.inf):
        assert mc.lp_exponent(mc.lp_arch(p)) == p
    assert mc.lp_exponent("pre_rms") is None
    with pytest.raises(ValueError):
        mc.lp_exponent("pre_lp:0.5")
    with pytest.raises(ValueError):
        mc.forward_stack("pre_cube", mc.StackConfig("xiong", 8, (1,)), None)


def _float64_measure(arch, cfg, seeds):
    stack = mc.draw_stack(cfg, seeds, "cpu", dtype=torch.float64)
    return mc.measure_chunk(arch, cfg, stack)


def test_pre_lp_with_p_2_is_pre_rmsnorm():
    """Same weights, float64: Lp at p = 2 (the stable kernel) and torch's RMSNorm compute the
    same function with different roundings. Budget: the deepest path has about L·(3d + 20)
    roundings of u = 2^-53 each, amplified by the stack's relative condition (the first/last
    gradient ratios of benchmarks/lp_depth.py are below 10): 10·L·(3d + 20)·2^-53 < 2^-40 here."""
    cfg = mc.StackConfig("standard", 64, (2, 4), n_tokens=4)
    tol = 10 * 4 * (3 * 64 + 20) * 2.0**-53
    rms = _float64_measure("pre_rms", cfg, [0, 1])
    for p, same in ((2.0, True), (2.001, False)):  # a nearby p must be told apart by the same check
        lp = _float64_measure(mc.lp_arch(p), cfg, [0, 1])
        rel = np.abs(lp["hidden_ms"] / rms["hidden_ms"] - 1).max()
        grad = np.abs(lp["grad_sq"][4]["w2"] / rms["grad_sq"][4]["w2"] - 1).max()
        assert (max(rel, grad) <= tol) == same, (p, rel, grad)


def test_shape_constant_is_one_at_p_2_and_approaches_the_large_d_limit():
    two = shape_constants(2.0, 32, samples=4096)
    assert two.c == pytest.approx(1.0, abs=1e-14) and two.j == pytest.approx(31.0, abs=1e-11)
    # finite-d correction is O(1/d): the gap shrinks from d = 64 to d = 1024 (within 4 SE)
    for p in (1.0, 3.0, 4.0):
        near, far = (shape_constants(p, d, samples=4096) for d in (64, 1024))
        gaps = [abs(s.c - large_d_shape_constant(p)) for s in (near, far)]
        se = far.c_se
        assert gaps[1] < gaps[0] and gaps[1] <= 4 * se + 2 * gaps[0] * 64 / 1024


@pytest.mark.parametrize("p", (1.0, 3.0, math.inf))
def test_hidden_mean_square_of_pre_lp_lies_in_its_band(p):
    cfg = mc.StackConfig("xiong", 32, (2, 4, 8, 16), n_tokens=8)
    measured = mc.measure([mc.lp_arch(p)], cfg, list(range(8)))[mc.lp_arch(p)]
    g = block_gains("xiong", 32, "relu", 0.0)
    shape = shape_constants(p, 32)
    checks = judge_hidden(mc.lp_arch(p), measured["hidden_ms"], g, shape, cfg.depths, n_checks=3 * 4)
    assert all(c.passed for c in checks), checks
    if math.isinf(p):
        # the same judge, told that the max-norm behaves like RMSNorm (c = 1), must fail. (For
        # p = 1 and 3 the band is too wide to reject c = 1: its attention term is only known to
        # lie in [0, attn_max], and c_p is within a factor 1.6 of 1 there.)
        rms_like = type(shape)(p, 32, 1.0, 0.0, 31.0, 0.0)
        wrong = judge_hidden(mc.lp_arch(p), measured["hidden_ms"], g, rms_like, cfg.depths, n_checks=3 * 4)
        assert not all(c.passed for c in wrong)
    assert hidden_band_lp(g, 16, shape.c)[0] > 1.0
