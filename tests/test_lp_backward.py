"""The stable Lp kernel's backward (precision/lp_emulate.emulate_stable_backward) never exceeds
its worst-case bound (precision/lp.stable_backward_bound): hypothesis searches with
`target(error / bound)` over the structured families (|mean|/std up to 1e6, outliers, near
overflow, subnormals, constant rows, heavy tails, sparse, raw arrays), incoming gradients that are
normal, heavy-tailed, sparse, tiny or huge, weights up to |w| = 64 and p in {1, 1.5, 2, 3, 4, inf},
against the exact gradient of the arbitrary-precision reference."""

import math

import numpy as np
import pytest
from hypothesis import currently_in_test_context, example, given, note, target
from hypothesis import strategies as st
from precision_cases import GRADIENT_SOURCES, draw_affine, draw_gradient, draw_input_rows

from normtheory.formats import FORMATS
from normtheory.precision.bounds.lp import stable_backward_bound
from normtheory.precision.emulation.lp import SEQUENTIAL, emulate_stable_backward
from normtheory.precision.measure import absolute_errors
from normtheory.reference import evaluate

P_VALUES = (1, 1.5, 2, 3, 4, math.inf)
ORDERS = {"sequential": SEQUENTIAL, "warp": SEQUENTIAL.variant(lanes=32),
          "pairwise_no_fma": SEQUENTIAL.variant(lanes=None, fma=False)}


@st.composite
def lp_cases(draw):
    fmt, rng, source, x = draw_input_rows(draw, "lpnorm", max_n=24, max_rows=4)
    gy_source = draw(st.sampled_from(GRADIENT_SOURCES))
    gy = draw_gradient(gy_source, rng, x.shape, fmt)
    w, b, eps, _ = draw_affine(draw, "rmsnorm", rng, fmt, x.shape[1])
    affine = draw(st.sampled_from(["none", "weight", "weight_bias"]))
    p = draw(st.sampled_from(P_VALUES))
    note(f"format={fmt.name} source={source} gy={gy_source} shape={x.shape} eps={eps} affine={affine} p={p}")
    return fmt, x, gy, w, b, eps, affine, p


def check_lp_backward(fmt, x, gy, w, b, eps, affine, p, kernel=emulate_stable_backward):
    """Assert every gradient of every order within the bound; return the worst error/bound."""
    exact = evaluate("lpnorm", x, w, b, eps=eps, affine=affine, p=p, gy=gy, prec=96)
    worst = 0.0
    for order, model in ORDERS.items():
        for grad_format in {"fp32", fmt.name}:
            computed = kernel(x, gy, w, p=p, eps=eps, affine=affine, grad_format=grad_format, model=model)
            bound = stable_backward_bound(x, gy, w, p=p, eps=eps, affine=affine, grad_format=grad_format,
                                          fma=model.fma)
            for quantity, value in computed.items():
                err = absolute_errors(value, exact[quantity])
                limit = bound[quantity]
                finite = np.isfinite(limit)
                assert (err[finite] <= limit[finite]).all(), (
                    f"{order} {quantity} in {grad_format}: error above bound, worst error/bound "
                    f"{np.max(np.where(finite, err / np.where(limit > 0, limit, 1.0), 0.0)):.4g}")
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = np.where(finite & (limit > 0), err / np.where(limit > 0, limit, 1.0), 0.0)
                worst = max(worst, float(ratio.max(initial=0.0)))
    if currently_in_test_context():
        target(worst, label=f"p={p}")
    return worst


@given(lp_cases())
@example((FORMATS["fp32"], np.array([[3.0, -3.0, 1.0, 0.0]]), np.array([[1.0, -2.0, 0.5, 3.0]]), np.ones(4),
          np.zeros(4), 1e-6, "weight", math.inf))  # a tie at the maximum: φ split evenly
@example((FORMATS["bf16"], np.array([[0.0, 0.0, 0.0, 0.0]]), np.array([[1.0, -2.0, 0.5, 3.0]]), np.ones(4),
          np.zeros(4), 1e-6, "weight_bias", 3))  # the floor is the maximum
def test_stable_lp_backward_stays_within_its_bound(case):
    check_lp_backward(*case)


@pytest.mark.parametrize("p", P_VALUES)
def test_the_bound_is_finite_and_not_vacuous_on_normal_rows(p):
    """On normal fp32 rows every bound is finite and the worst error reaches a visible part of it
    (so the soundness test above is not vacuously passed by infinite or huge bounds)."""
    rng = np.random.default_rng(2)
    fmt = FORMATS["fp32"]
    x = fmt.round_to_float64(rng.standard_normal((4, 32)))
    gy = fmt.round_to_float64(rng.standard_normal((4, 32)))
    w = fmt.round_to_float64(rng.standard_normal(32))
    bound = stable_backward_bound(x, gy, w, p=p, eps=1e-6, affine="weight_bias")
    assert all(np.isfinite(v).all() for v in bound.values())
    assert check_lp_backward(fmt, x, gy, w, w, 1e-6, "weight_bias", p) > 0.01


def _wrong_backward(x, gy, w=None, *, p, eps, affine="none", grad_format="fp32", model=SEQUENTIAL):
    right = emulate_stable_backward(x, gy, w, p=p, eps=eps, affine=affine, grad_format=grad_format, model=model)
    return {**right, "gx": FORMATS[grad_format].round_to_float64(right["gx"] * (1 + 2.0**-14))}


def test_the_lp_backward_check_can_fail():
    """A kernel whose gx is off by a relative 2^-14 (a 1/N kept with 14 bits) is caught."""
    rng = np.random.default_rng(3)
    fmt = FORMATS["fp32"]
    x = fmt.round_to_float64(rng.standard_normal((4, 32)))
    gy = fmt.round_to_float64(rng.standard_normal((4, 32)))
    with pytest.raises(AssertionError, match="error above bound"):
        check_lp_backward(fmt, x, gy, None, None, 1e-6, "none", 2, kernel=_wrong_backward)


def test_infinity_subgradient_splits_ties_as_torch_does():
    """torch.linalg.vector_norm(ord=inf) and amax send the gradient evenly to tied maxima; the
    emulated kernel uses the same convention: gx of a row with two tied maxima and gy = e_j."""
    x = np.array([[2.0, -2.0, 1.0, 0.5]])
    gy = np.array([[0.0, 0.0, 1.0, 0.0]])  # y_2 = x_2/2: K_b = y_2/d = 1/8, φ = ±d/2 on the ties
    gx = emulate_stable_backward(x, gy, p=math.inf, eps=1e-6)["gx"]
    np.testing.assert_array_equal(gx, [[-0.25 * 0.5, 0.25 * 0.5, 0.5, 0.0]])
