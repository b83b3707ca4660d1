"""Properties of the bounds and of `tolerance` that do not need the reference."""

import numpy as np
import pytest

from normtheory.errors import UsageError
from normtheory.formats import FORMATS
from normtheory.precision import tolerance
from normtheory.precision.bounds.forward import forward_bound
from normtheory.precision.models import MODELS, Model
from normtheory.precision.toolkit.rounding import Gammas


def _rows(seed=0, n=128):
    return FORMATS["bf16"].round_to_float64(np.random.default_rng(seed).standard_normal((4, n)))


def test_layernorm_bound_is_finite_on_constant_rows_because_kappa_includes_eps():
    x = np.full((1, 64), 3.0)
    bound = forward_bound("layernorm", x, model=MODELS["default"], eps=1e-5).total
    assert np.isfinite(bound).all()
    assert not np.isfinite(forward_bound("layernorm", x, model=MODELS["default"], eps=0.0).total).all()


def test_probabilistic_bound_is_below_the_worst_case_and_grows_slower():
    g_worst, g_prob = Gammas(2.0**-24, "worst"), Gammas(2.0**-24, "probabilistic")
    assert g_prob(10_000) < g_worst(10_000)
    assert g_prob(40_000) / g_prob(10_000) == pytest.approx(2.0, rel=1e-3)  # sqrt(4)
    assert g_worst(40_000) / g_worst(10_000) == pytest.approx(4.0, rel=1e-2)


def test_bound_grows_with_the_reduction_depth():
    x = FORMATS["fp32"].round_to_float64(np.random.default_rng(1).standard_normal((2, 512)) + 50)
    seq = forward_bound("layernorm", x, model=MODELS["two_pass_sequential"], eps=1e-5).pre_rounding
    tree = forward_bound("layernorm", x, model=MODELS["default"], eps=1e-5).pre_rounding
    assert (seq > 4 * tree).all()


def test_default_tolerance_is_the_larger_of_two_pass_and_welford():
    x = _rows()
    tol = tolerance("rmsnorm", x, format="bf16", eps=1e-6)
    for name in ("default", "welford"):
        assert (tol >= forward_bound("rmsnorm", x, model=MODELS[name], eps=1e-6, out_format="bf16").total).all()


def test_ulp_contract_and_model_contract():
    x = _rows()
    exact = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + 1e-6)
    tol = tolerance("rmsnorm", x, format="bf16", eps=1e-6, contract="ulp:2", exact=exact)
    np.testing.assert_array_equal(tol, 2 * FORMATS["bf16"].ulp(exact))
    w = _rows(seed=2)[0] * 4
    llama = tolerance("rmsnorm", x, w, format="bf16", eps=1e-6, affine="weight", contract="model:llama")
    # two roundings in bf16 instead of one: the llama bound is nearly twice the default's
    assert (llama > 1.5 * tolerance("rmsnorm", x, w, format="bf16", eps=1e-6, affine="weight")).all()


@pytest.mark.parametrize("contract", ["nope", "ulp:x", "model:unknown", "ulp:1"])
def test_bad_contracts_are_usage_errors(contract):
    with pytest.raises(UsageError):
        tolerance("rmsnorm", _rows(), format="bf16", eps=1e-6, contract=contract)


def test_overflowing_rows_get_no_bound():
    x = np.full((1, 256), 16.0)  # 256 · 256 > 65504: the fp16 sum of squares overflows
    assert np.isinf(forward_bound("rmsnorm", x, model=MODELS["fp16_accum"], eps=1e-6).total).all()
    assert np.isfinite(forward_bound("rmsnorm", x / 4, model=MODELS["fp16_accum"], eps=1e-6).total).all()


def test_models_refuse_an_accumulator_they_cannot_emulate():
    with pytest.raises(ValueError):
        Model("bad", acc="fp64")
