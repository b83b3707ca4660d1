"""Soundness of the backward bounds: no input makes an emulated backward kernel (gx, gw, gb)
exceed its own worst-case bound (bounds/backward.py).

Hypothesis searches with `target(error / bound)` over the structured families of the forward
test (|mean|/std up to 1e6, massive outliers, near overflow, subnormals, constant and
near-constant rows, heavy tails, sparse, raw arrays with subnormals), with incoming gradients
that are normal, heavy-tailed, sparse, tiny or huge, and weights up to |w| = 64. The errors
are measured against the exact gradients of the arbitrary-precision reference.
"""

import numpy as np
import pytest
from hypothesis import currently_in_test_context, example, given, note, target
from hypothesis import strategies as st
from precision_cases import GRADIENT_SOURCES, draw_affine, draw_gradient, draw_input_rows

from normtheory.formats import FORMATS
from normtheory.precision.bounds.backward import backward_bound
from normtheory.precision.emulation.backward import backward
from normtheory.precision.measure import absolute_errors, exact_outputs
from normtheory.precision.models import MODELS

BACKWARD_MODELS = dict(MODELS)  # eps outside the root included: judged against its own exact gradient
@st.composite
def cases(draw, op):
    fmt, rng, source, x = draw_input_rows(draw, op, max_n=48, max_rows=5)
    gy_source = draw(st.sampled_from(GRADIENT_SOURCES))
    gy = draw_gradient(gy_source, rng, x.shape, fmt)
    w, b, eps, affine = draw_affine(draw, op, rng, fmt, x.shape[1])
    note(f"format={fmt.name} source={source} gy={gy_source} rows={x.shape[0]} n={x.shape[1]} eps={eps} "
         f"affine={affine}")
    return fmt, x, gy, w, b, eps, affine


def _ratio(err, bound):
    finite = np.isfinite(bound)
    if not finite.any():
        return 0.0, True
    ok = bool((err[finite] <= bound[finite]).all())
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(bound > 0, err / np.where(bound > 0, bound, 1.0), np.where(err > 0, np.inf, 0.0))
    return float(np.max(np.where(finite, ratio, 0.0))), ok


def check_backward_models(op, fmt, x, gy, w, b, eps, affine, models=BACKWARD_MODELS, kernel=backward):
    """Assert every model's gx, gw, gb within its bound; return the worst error/bound."""
    exact_by_mode = {}
    worst = 0.0
    for name, model in models.items():
        if model.eps_mode not in exact_by_mode:
            exact_by_mode[model.eps_mode] = exact_outputs(op, x, w, b, eps=eps, eps_mode=model.eps_mode,
                                                          affine=affine, gy=gy)
        exact = exact_by_mode[model.eps_mode]
        quantities = ["gx"] + [q for q in ("gw", "gb") if q in exact]
        worst_of_model = 0.0
        for grad_format in {"fp32", fmt.name}:
            computed = kernel(op, x, gy, w, b, model=model, eps=eps, affine=affine, grad_format=grad_format)
            bound = backward_bound(op, x, gy, w, b, model=model, eps=eps, affine=affine, grad_format=grad_format)
            for quantity in quantities:
                err = absolute_errors(computed[quantity], exact[quantity])
                limit = getattr(bound, quantity)
                ratio, ok = _ratio(err, limit)
                assert ok, f"{name} {quantity} in {grad_format}: error above bound, worst error/bound {ratio:.4g}"
                worst_of_model = max(worst_of_model, ratio)
        if currently_in_test_context():  # one label per model: approx_rsqrt's ≈ 1 must not hide the rest
            target(worst_of_model, label=name)
        worst = max(worst, worst_of_model)
    return worst


@given(cases("layernorm"))
@example((FORMATS["fp32"], np.array([[1e6 + 0.5, 1e6 - 0.5, 1e6, 1e6 + 0.25]]), np.array([[1.0, -2.0, 0.5, 3.0]]),
          np.ones(4), np.zeros(4), 1e-12, "none"))
def test_layernorm_backward_models_stay_within_their_bounds(case):
    check_backward_models("layernorm", *case)


@given(cases("rmsnorm"))
def test_rmsnorm_backward_models_stay_within_their_bounds(case):
    check_backward_models("rmsnorm", *case)


@given(cases("crmsnorm"))
def test_crmsnorm_backward_models_stay_within_their_bounds(case):
    check_backward_models("crmsnorm", *case)


@given(cases("l2normalize"))
@example((FORMATS["fp32"], np.array([[3 * 2.0**-20, 4 * 2.0**-20], [0.0, 0.0]]), np.array([[1.0, -2.0], [0.5, 3.0]]),
          np.ones(2), None, np.nextafter(5 * 2.0**-20, 1.0), "none"))  # a floor row next to the kink, a zero row
def test_l2normalize_backward_models_stay_within_their_bounds(case):
    check_backward_models("l2normalize", *case)


def _wrong_backward(op, x, gy, w, b, *, model, eps, affine="none", grad_format="fp32", w_format=None):
    """A kernel two output ulps off in gx and one in gw (an extra rounding and a bit)."""
    right = backward(op, x, gy, w, b, model=model, eps=eps, affine=affine, grad_format=grad_format)
    fmt = FORMATS[grad_format]
    return {**right, "gx": right["gx"] + 2 * fmt.ulp(right["gx"]), "gw": right["gw"] + fmt.ulp(right["gw"])}


def test_the_backward_soundness_check_can_fail():
    """The same check catches a kernel that is two ulps off in gx and one in gw."""
    fmt = FORMATS["bf16"]
    rng = np.random.default_rng(3)
    x = fmt.round_to_float64(rng.standard_normal((4, 32)))
    gy = fmt.round_to_float64(rng.standard_normal((4, 32)))
    w = fmt.round_to_float64(rng.standard_normal(32))
    only_default = {"default": MODELS["default"]}
    assert check_backward_models("rmsnorm", fmt, x, gy, w, None, 1e-6, "weight", models=only_default) <= 1
    with pytest.raises(AssertionError, match="error above bound"):
        check_backward_models("rmsnorm", fmt, x, gy, w, None, 1e-6, "weight", models=only_default, kernel=_wrong_backward)
