"""The rounding-error toolkit (normtheory/precision/toolkit) and the per-statistic table of the bounds.

- the one martingale bound's level search (toolkit/martingale.stopping_level) returns only
  levels it has verified, from below and from above, and rejects what does not verify;
- the exact-terms chain bound (toolkit/sums.py), now found by the verified search, gives the
  same numbers as the unverified downward iteration the forward bound used before (written here
  from its definition), on the long fp16/bf16/fp32 chains where that iteration mattered;
- BoundContext's η, η_in and DAZ load follow the format's own constants;
- the bounds take nothing op-specific from the op's name: a NormSpec under another name but
  with the same statistic gets the same bound, and one that differs in `centred` does not.
(The tree layout's operand sums are checked against the emulated tree in
test_precision_probabilistic.py and test_precision_backward_probabilistic.py.)
"""

from dataclasses import replace

import numpy as np
import pytest

from normtheory.errors import UsageError
from normtheory.formats import FORMATS
from normtheory.precision.bounds.normalized import normalized_error
from normtheory.precision.bounds.statistic_rules import RULES, rule_for
from normtheory.precision.models import MODELS
from normtheory.precision.toolkit.context import BoundContext
from normtheory.precision.toolkit.martingale import FIXED_POINT_ITERATIONS, stopping_level
from normtheory.precision.toolkit.rounding import LAMBDA, binade
from normtheory.precision.toolkit.sums import probabilistic_sum_error
from normtheory.precision.toolkit.tree import tree_partial_sums
from normtheory.registry import REGISTRY, STATISTICS, get_spec


def _affine_radius(a, k):
    """radius(B) = a + k·B: monotone, with the single fixed point a/(1 − k) for k < 1."""
    return lambda level: a + k * level


def test_upward_search_returns_a_verified_level_or_none():
    a = np.array([1.0, 2.0, 1e-30])
    # k = 0.1: eight steps reach the fixed point to 1e-8, the 2^-8 widening puts the level above it
    level = stopping_level(_affine_radius(a, 0.1), rows=3)
    assert np.isfinite(level).all()
    assert (a + 0.1 * level <= level).all()
    # k = 0.9: eight steps from 0 stop at 57% of the fixed point; that level does not verify, and an
    # unchecked search would have returned it as a bound
    assert np.isinf(stopping_level(_affine_radius(a, 0.9), rows=3)).all()
    # no fixed point at all (k > 1): nothing verifies
    assert np.isinf(stopping_level(_affine_radius(a, 1.5), rows=3)).all()


def test_downward_search_keeps_a_valid_start_and_rejects_a_low_one():
    a, k = np.array([1.0, 3.0]), 0.5
    fixed = a / (1 - k)
    level = stopping_level(_affine_radius(a, k), rows=2, start=4 * fixed)  # a valid start: above the fixed point
    assert np.isfinite(level).all() and (a + k * level <= level).all()
    assert (level >= fixed).all() and (level < 4 * fixed).all()  # it came down and stayed valid
    # a start below the fixed point climbs towards it but never gets there: rejected
    assert np.isinf(stopping_level(_affine_radius(a, k), rows=2, start=0.5 * fixed)).all()


def _unverified_chain_bound(values, model, u, lam):
    """The exact-terms sum bound as the forward computed it before the refactor, from its definition
    (toolkit/sums.py docstring): the tree form λ‖u·binade(|s| + γ_h·a)‖ and, for one lane, the
    downward iteration E ← λ‖u·binade(|s| + min(γ_h·a, E))‖ from E₀ = λu‖s‖/(1 − λu√K), unchecked."""
    s, a = tree_partial_sums(values, model)
    s = np.abs(s)
    h = model.reduction_depth(values.shape[1])
    drift = (h * u / (1 - h * u) if h * u < 1 else np.inf) * a  # γ_h, infinite from h·u ≥ 1

    def radius(shift):
        return lam * np.sqrt(((u * binade(s + shift)) ** 2).sum(axis=1))

    bound = radius(drift)
    count = s.shape[1]
    reach = lam * u * np.sqrt(count)
    if model.lane_count(values.shape[1]) == 1 and count > 0 and reach < 1:
        e = lam * u * np.sqrt((s**2).sum(axis=1)) / (1 - reach)
        for _ in range(FIXED_POINT_ITERATIONS):
            e = radius(np.minimum(drift, e[:, None]))
        bound = np.minimum(bound, e)
    return bound


def _chain_rows(fmt, n, rng):
    normal = rng.standard_normal((24, n))
    offset = rng.standard_normal((24, n)) + 50.0  # long same-sign partial sums: the drift matters
    cancelling = np.concatenate([normal[:, : n // 2], -normal[:, : n // 2]], axis=1)[:, :n]
    return fmt.round_to_float64(np.concatenate([normal, offset, cancelling]))


@pytest.mark.parametrize("model_name", ["bf16_accum", "fp16_accum", "two_pass_sequential", "default"])
@pytest.mark.parametrize("n", [16, 256, 1024])
def test_verified_chain_bound_gives_the_numbers_of_the_unverified_iteration(model_name, n):
    model = MODELS[model_name]
    ctx = BoundContext(model, "probabilistic")
    x = _chain_rows(FORMATS[model.acc], n, np.random.default_rng(n))
    with np.errstate(all="ignore"):  # γ_h = inf for long bf16 chains (h·u ≥ 1), as inside the bounds
        verified = probabilistic_sum_error(x, ctx)
        before = _unverified_chain_bound(x, model, ctx.u, LAMBDA)
    np.testing.assert_array_equal(verified, before)
    if model.lanes == 1 and model.acc != "fp32" and model.reduction_depth(n) * ctx.u < 1:
        # where the chain form is used, it is the smaller one on some rows (else this test could
        # not tell the two searches apart)
        s, a = tree_partial_sums(x, model)
        h = model.reduction_depth(n)
        with np.errstate(all="ignore"):
            tree_only = LAMBDA * np.sqrt(((ctx.u * binade(np.abs(s) + h * ctx.u / (1 - h * ctx.u) * a)) ** 2).sum(axis=1))
        assert (verified < tree_only).any()


def test_context_follows_the_format_constants():
    fp16 = FORMATS["fp16"]
    plain = BoundContext(MODELS["fp16_accum"])
    assert plain.eta == fp16.min_subnormal / 2 and plain.eta_in == 0.0 and plain.flush == 0.0
    ftz = BoundContext(MODELS["ftz"])  # fp32, FTZ/DAZ
    fp32 = FORMATS["fp32"]
    assert ftz.eta == fp32.min_normal == ftz.eta_in == ftz.flush
    x = np.array([[fp32.min_normal / 2, -fp32.min_normal, 1.0]])
    np.testing.assert_array_equal(ftz.loaded(x), [[0.0, -fp32.min_normal, 1.0]])
    np.testing.assert_array_equal(plain.loaded(x), x)
    assert ftz.with_kind("probabilistic", lam=1.0).gamma(4) != ftz.gamma(4)
    with pytest.raises(ValueError):
        BoundContext(MODELS["default"], "typical")


def test_every_statistic_but_the_power_mean_has_a_rule():
    assert set(RULES) == set(STATISTICS) - {"power_mean"}
    with pytest.raises(UsageError, match="no a-priori bound"):
        rule_for(get_spec("lpnorm"))


@pytest.mark.parametrize("op", ["layernorm", "rmsnorm", "crmsnorm"])
@pytest.mark.parametrize("kind", ["worst", "probabilistic"])
def test_bounds_take_the_op_from_its_spec_not_its_name(op, kind):
    spec = REGISTRY[op]
    x = FORMATS["fp32"].round_to_float64(np.random.default_rng(2).standard_normal((4, 33)) + 3.0)
    ctx = BoundContext(MODELS["welford"], kind)
    same = normalized_error(replace(spec, name="renamed"), x, ctx, eps=1e-5)
    original = normalized_error(spec, x, ctx, eps=1e-5)
    np.testing.assert_array_equal(same.err_n, original.err_n)
    np.testing.assert_array_equal(same.n, original.n)
    # the check can fail: the same name with the other `centred` is a different normalizer
    flipped = normalized_error(replace(spec, centred=not spec.centred), x, ctx, eps=1e-5)
    assert not np.array_equal(flipped.err_n, original.err_n)
