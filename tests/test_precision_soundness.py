"""Soundness: no input makes an emulated kernel exceed its own worst-case bound.

Hypothesis searches with `target(error / bound)` over the structured families (|mean|/std up
to 1e6, massive outliers, near overflow, subnormals, constant and near-constant rows, heavy
tails, sparse) and raw arrays with subnormals, rescaled by powers of two and shifted, with
weights up to |w| = 64. The error is measured against the exact value (reference.evaluate).
"""

import numpy as np
import pytest
from hypothesis import example, given, note, target
from hypothesis import strategies as st
from precision_cases import draw_affine, draw_input_rows

from normtheory.formats import FORMATS
from normtheory.precision.bounds.forward import forward_bound
from normtheory.precision.emulation.forward import forward
from normtheory.precision.measure import absolute_errors, exact_outputs
from normtheory.precision.models import MODELS


@st.composite
def cases(draw, op):
    fmt, rng, source, x = draw_input_rows(draw, op, max_n=72, max_rows=3)
    w, b, eps, affine = draw_affine(draw, op, rng, fmt, x.shape[1])
    note(f"format={fmt.name} source={source} n={x.shape[1]} eps={eps} affine={affine}")
    return fmt, x, w, b, eps, affine


def _check_every_model(op, fmt, x, w, b, eps, affine):
    exact = {mode: exact_outputs(op, x, w, b, eps=eps, eps_mode=mode, affine=affine)["y"]
             for mode in ("inside", "outside")}
    worst = 0.0
    for name, model in MODELS.items():
        worst_of_model = 0.0
        for out in {"fp32", fmt.name}:
            y = forward(op, x, w, b, model=model, eps=eps, affine=affine, out_format=out)
            bound = forward_bound(op, x, w, b, model=model, eps=eps, affine=affine, out_format=out).total
            err = absolute_errors(y, exact[model.eps_mode])
            finite = np.isfinite(bound)
            if not finite.any():
                continue
            with np.errstate(invalid="ignore"):
                ratio = np.max(np.where(finite, err / np.where(bound > 0, bound, 1.0), 0.0))
            assert (err[finite] <= bound[finite]).all(), (
                f"{name} out={out}: error {err[finite].max():.3g} above bound, worst error/bound {ratio:.4g}")
            worst_of_model = max(worst_of_model, ratio)
        target(worst_of_model, label=name)  # one label per model: approx_rsqrt's ≈ 1 must not hide the rest
        worst = max(worst, worst_of_model)
    return worst


@given(cases("layernorm"))
@example((FORMATS["fp32"], np.array([[1e6 + 0.5, 1e6 - 0.5, 1e6, 1e6 + 0.25]]), np.ones(4), np.zeros(4), 1e-12, "none"))
def test_layernorm_models_stay_within_their_bounds(case):
    _check_every_model("layernorm", *case)


@given(cases("rmsnorm"))
@example((FORMATS["bf16"], np.full((1, 43), 39.0), np.ones(43), None, 1e-5, "weight"))  # fp16 Σx² rounds up to inf
def test_rmsnorm_models_stay_within_their_bounds(case):
    _check_every_model("rmsnorm", *case)


@given(cases("crmsnorm"))
def test_crmsnorm_models_stay_within_their_bounds(case):
    _check_every_model("crmsnorm", *case)


# l2normalize's max floor: rows at 2^-12 .. 2^12 of the families against eps up to 0.25 put both
# branches in the search; the examples sit at the floor (eps a norm here: ‖(3, 4)·2^-20‖ = 5·2^-20)
@given(cases("l2normalize"))
@example((FORMATS["fp32"], np.array([[3 * 2.0**-20, 4 * 2.0**-20]]), np.ones(2), None, 5 * 2.0**-20, "none"))
@example((FORMATS["bf16"], np.array([[3 * 2.0**-20, 4 * 2.0**-20], [0.0, 0.0]]), np.ones(2), None,
          np.nextafter(5 * 2.0**-20, 1.0), "weight"))
def test_l2normalize_models_stay_within_their_bounds(case):
    _check_every_model("l2normalize", *case)


def test_the_soundness_check_can_fail():
    """A kernel one output ulp off (an extra rounding) is caught by the same check."""
    fmt = FORMATS["bf16"]
    x = fmt.round_to_float64(np.random.default_rng(7).standard_normal((4, 64)))
    y = forward("rmsnorm", x, model=MODELS["default"], eps=1e-6, out_format="bf16")
    off_by_one_ulp = y + fmt.ulp(y)
    with pytest.raises(AssertionError):
        exact = exact_outputs("rmsnorm", x, eps=1e-6)["y"]
        bound = forward_bound("rmsnorm", x, model=MODELS["default"], eps=1e-6, out_format="bf16").total
        assert (absolute_errors(off_by_one_ulp, exact) <= bound).all()


def test_fp16_weights_in_a_bf16_accumulator_get_no_bound():
    """Found by the nightly profile: w = -0.42407227 is fp16 but not bf16; the kernel rounds it."""
    x, w = np.array([[2.98023224e-07]]), np.array([-0.42407227])
    bound = forward_bound("crmsnorm", x, w, model=MODELS["bf16_accum"], eps=0.25, affine="weight", out_format="fp16")
    assert np.isinf(bound.total).all()
