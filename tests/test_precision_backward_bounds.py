"""Properties of the backward bounds and of `tolerance(quantity=...)` that need no reference."""

import numpy as np
import pytest

from normtheory.errors import UsageError
from normtheory.formats import FORMATS
from normtheory.precision import tolerance
from normtheory.precision.bounds.backward import backward_bound
from normtheory.precision.models import MODELS


def _case(rows=4, n=128, seed=0, fmt="bf16"):
    f = FORMATS[fmt]
    rng = np.random.default_rng(seed)
    x = f.round_to_float64(rng.standard_normal((rows, n)))
    gy = f.round_to_float64(rng.standard_normal((rows, n)))
    w = f.round_to_float64(rng.standard_normal(n))
    return x, gy, w


@pytest.mark.parametrize("quantity,shape", [("y", (4, 128)), ("gx", (4, 128)), ("gw", (128,)), ("gb", (128,))])
def test_tolerance_shapes_per_quantity(quantity, shape):
    x, gy, w = _case()
    tol = tolerance("layernorm", x, w, w, format="bf16", eps=1e-5, affine="weight_bias", quantity=quantity, gy=gy)
    assert tol.shape == shape and np.isfinite(tol).all() and (tol > 0).all()


def test_gradients_need_gy_and_known_quantities():
    x, gy, w = _case()
    with pytest.raises(UsageError, match="gy"):
        tolerance("rmsnorm", x, w, format="bf16", eps=1e-6, affine="weight", quantity="gx")
    with pytest.raises(UsageError, match="quantity"):
        tolerance("rmsnorm", x, w, format="bf16", eps=1e-6, affine="weight", quantity="gz", gy=gy)
    with pytest.raises(UsageError, match="shape"):
        tolerance("rmsnorm", x, w, format="bf16", eps=1e-6, affine="weight", quantity="gx", gy=gy[:2])
    with pytest.raises(UsageError, match="backward"):
        tolerance("rmsnorm", x, w, format="bf16", eps=1e-6, affine="weight", quantity="gx", gy=gy,
                  contract="model:eps_outside")


def test_ulp_contract_for_a_weight_gradient_uses_the_weight_format():
    x, gy, w = _case()
    exact_gw = (gy * x).sum(axis=0)  # any values of shape (n,) will do: only their ulps matter
    tol = tolerance("rmsnorm", x, w, format="bf16", w_format="fp32", eps=1e-6, affine="weight", quantity="gw",
                    gy=gy, contract="ulp:3", exact=exact_gw)
    np.testing.assert_array_equal(tol, 3 * FORMATS["fp32"].ulp(exact_gw))


def test_default_gradient_tolerance_covers_two_pass_and_welford():
    x, gy, w = _case(fmt="fp32")
    x = x + 300.0  # an offset where the two statistics algorithms' bounds differ
    for quantity in ("gx", "gw", "gb"):
        tol = tolerance("layernorm", x, w, w, format="fp32", eps=1e-5, affine="weight_bias", quantity=quantity, gy=gy)
        for name in ("default", "welford"):
            bound = getattr(backward_bound("layernorm", x, gy, w, w, model=MODELS[name], eps=1e-5,
                                           affine="weight_bias", grad_format="fp32"), quantity)
            assert (tol >= bound).all()


def test_weight_gradient_bound_grows_with_the_rows_reduced_over():
    """Stacking the same rows k times multiplies Σ|gy·n| by k: the gw bound grows at least k-fold."""
    x, gy, w = _case(rows=8, fmt="fp32")
    one = backward_bound("rmsnorm", x, gy, w, model=MODELS["default"], eps=1e-6, affine="weight").gw_pre
    four = backward_bound("rmsnorm", np.tile(x, (4, 1)), np.tile(gy, (4, 1)), w, model=MODELS["default"],
                          eps=1e-6, affine="weight").gw_pre
    assert (four >= 4 * one).all()


def test_probabilistic_gradient_bound_is_below_the_worst_case():
    x, gy, w = _case(rows=2, n=4096, fmt="fp32")
    worst = backward_bound("layernorm", x, gy, w, w, model=MODELS["two_pass_sequential"], eps=1e-5, affine="weight_bias")
    prob = backward_bound("layernorm", x, gy, w, w, model=MODELS["two_pass_sequential"], eps=1e-5,
                          affine="weight_bias", kind="probabilistic")
    assert (prob.gx_pre < worst.gx_pre).all() and (prob.gw_pre < worst.gw_pre).all()


def test_fp16_gradients_that_overflow_the_fp16_accumulator_get_no_bound():
    x, gy, w = _case(fmt="fp16")
    big = FORMATS["fp16"].round_to_float64(gy * 2000)  # Σ|gy·w| over 128 entries exceeds 65504
    bound = backward_bound("layernorm", x, big, w, w, model=MODELS["fp16_accum"], eps=1e-5, affine="weight_bias")
    assert np.isinf(bound.gx).all()
    assert np.isfinite(backward_bound("layernorm", x, gy, w, w, model=MODELS["fp16_accum"], eps=1e-5,
                                      affine="weight_bias").gx).all()


def test_quantities_not_asked_for_are_not_computed():
    x, gy, w = _case()
    bound = backward_bound("rmsnorm", x, gy, w, model=MODELS["default"], eps=1e-6, affine="weight", quantities=("gw",))
    assert bound.gx is None and bound.gb is None and bound.gw.shape == (128,)
