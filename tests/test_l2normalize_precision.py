"""The precision model of l2normalize (a sum of squares, a square root and a max floor instead of
an rsqrt): the careful models stay within the `default` tolerance on every family, forward and
backward; plausible wrong kernels exceed it; the gradient bound is infinite exactly where the
kernel's branch may differ from the exact one (the kink ‖x‖₂ = eps) or 1/eps leaves the
accumulator. The soundness searches are in test_precision_soundness.py and
test_precision_backward_soundness.py (`test_l2normalize_*`)."""

from __future__ import annotations

import numpy as np
import pytest

from normtheory.families import FAMILIES, draw_rows
from normtheory.formats import FORMATS
from normtheory.precision import MODELS, backward_bound, forward_bound, tolerance
from normtheory.precision.emulation.arith import Arith
from normtheory.precision.emulation.backward import backward
from normtheory.precision.emulation.forward import forward
from normtheory.precision.emulation.reductions import tree_sum_products, tree_sum_squares
from normtheory.precision.measure import absolute_errors, exact_outputs

OP = "l2normalize"
N = 256


def _ratio(err, bound):
    finite = np.isfinite(bound)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bound > 0, err / np.where(bound > 0, bound, 1.0), np.where(err > 0, np.inf, 0.0))
    return float(np.max(np.where(finite, ratio, 0.0), initial=0.0))


def _rows(family, fmt, seed, scale=1.0):
    return fmt.round_to_float64(draw_rows(family, np.random.default_rng(seed), 2, N, fmt) * scale)


def _rows_at_the_floor(family, fmt, seed, eps):
    """The family's rows rescaled to ‖x‖₂ ≈ 0.7·eps (below the floor) and 1.4·eps (above it)."""
    x = draw_rows(family, np.random.default_rng(seed), 2, N, fmt)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return fmt.round_to_float64(x / np.where(norms > 0, norms, 1.0) * eps * np.array([[0.7], [1.4]]))


@pytest.mark.parametrize("model", ["default", "welford"])
@pytest.mark.parametrize("fmt_name", ["bf16", "fp16", "fp32"])
def test_careful_kernels_stay_within_the_default_tolerance_on_every_family(model, fmt_name):
    fmt = FORMATS[fmt_name]
    for seed, family in enumerate(sorted(FAMILIES)):
        # eps = 1e-12 (torch's default) puts the tiny family on the floor; eps = 0.3 with rescaled
        # rows puts one row of every family below the floor and one above it
        for eps, x in ((1e-12, _rows(family, fmt, seed)), (0.3, _rows_at_the_floor(family, fmt, seed, 0.3))):
            gy = fmt.round_to_float64(np.random.default_rng(seed + 99).standard_normal(x.shape))
            exact = exact_outputs(OP, x, eps=eps, gy=gy)
            y = forward(OP, x, model=MODELS[model], eps=eps, out_format=fmt_name)
            tol_y = tolerance(OP, x, format=fmt_name, eps=eps)
            assert _ratio(absolute_errors(y, exact["y"]), tol_y) <= 1, (family, eps)
            gx = backward(OP, x, gy, model=MODELS[model], eps=eps, grad_format=fmt_name)["gx"]
            tol_gx = tolerance(OP, x, format=fmt_name, eps=eps, quantity="gx", gy=gy)
            assert _ratio(absolute_errors(gx, exact["gx"]), tol_gx) <= 1, (family, eps)


def _scale_rounded_to_the_output(x, *, eps, out):
    """A kernel that rounds ‖x‖₂ to the output format before dividing (torch's F.normalize on a
    bf16 tensor: the norm is a bf16 tensor): y = RN_o(x / RN_o(max(RN32(‖x‖₂), eps)))."""
    acc = Arith("fp32")
    norm = out.round_to_float64(np.maximum(acc.sqrt(tree_sum_squares(x, acc, MODELS["default"])), acc.round(eps)))
    return out.round_to_float64(x / norm[:, None])


def _eps_under_the_root(x, *, eps, out):
    """The `add` placement: x·rsqrt(Σx² + eps), in fp32 (an RMSNorm-style kernel without the 1/d)."""
    acc = Arith("fp32")
    total = acc.add(tree_sum_squares(x, acc, MODELS["default"]), acc.round(eps))
    return out.round_to_float64(acc.mul(x, acc.round(1.0 / np.sqrt(total))[:, None]))


@pytest.mark.parametrize("kernel,family,eps", [
    (_scale_rounded_to_the_output, "normal", 1e-12),
    (_scale_rounded_to_the_output, "heavy_tail", 1e-12),
    (_eps_under_the_root, "tiny", 1e-12),
])
def test_wrong_forward_kernels_exceed_the_default_tolerance(kernel, family, eps):
    fmt = FORMATS["bf16"]
    x = _rows(family, fmt, seed=5)
    exact = exact_outputs(OP, x, eps=eps)["y"]
    assert _ratio(absolute_errors(kernel(x, eps=eps, out=fmt), exact), tolerance(OP, x, format="bf16", eps=eps)) > 1


def _backward_variant(x, gy, *, eps, out, divisor, project_on_floor):
    """The careful backward with one thing changed: K = Σg·n̂/divisor (RMSNorm's d instead of 1), or
    the projection kept on floor rows (as if the scale moved with x there)."""
    ar, model = Arith("fp32"), MODELS["default"]
    stat = tree_sum_squares(x, ar, model)
    root, eps_acc = ar.sqrt(stat), ar.round(eps)
    r = ar.round(1.0 / np.maximum(root, eps_acc))
    n = ar.mul(x, r[:, None])
    k = ar.mul(tree_sum_products(gy, n, ar, model), ar.round(1.0 / divisor))
    if not project_on_floor:
        k = np.where(root < eps_acc, 0.0, k)
    return out.round_to_float64(ar.mul(ar.mul_add(-n, k[:, None], gy, True), r[:, None]))


@pytest.mark.parametrize("divisor,project_on_floor", [
    (N, False),  # RMSNorm's 1/d in the projection (rows above the floor)
    (1, True),  # the projection kept on rows below the floor
])
def test_wrong_backward_kernels_exceed_the_gx_tolerance(divisor, project_on_floor):
    fmt, eps = FORMATS["bf16"], 0.3
    x = _rows("normal", fmt, seed=11, scale=0.3 * 0.7 / 16 if project_on_floor else 1.0)  # ‖x‖₂ ≈ 16·scale
    assert (np.linalg.norm(x, axis=1) < eps).all() == project_on_floor
    gy = fmt.round_to_float64(np.random.default_rng(12).standard_normal(x.shape))
    # the careful backward passes on the same rows (the check can pass), the variant does not
    careful = _backward_variant(x, gy, eps=eps, out=fmt, divisor=1, project_on_floor=False)
    exact = exact_outputs(OP, x, eps=eps, gy=gy)["gx"]
    tol = tolerance(OP, x, format="bf16", eps=eps, quantity="gx", gy=gy)
    assert _ratio(absolute_errors(careful, exact), tol) <= 1
    wrong = _backward_variant(x, gy, eps=eps, out=fmt, divisor=divisor, project_on_floor=project_on_floor)
    assert _ratio(absolute_errors(wrong, exact), tol) > 1


def test_no_gradient_bound_at_the_kink_and_why():
    """x = (1, 1), eps just above √2: exactly the floor (2 < eps²), but fp32 rounds sqrt(2) and eps
    to the same value, so the kernel's strict comparison takes the norm's branch and projects. The
    two gradients differ by O(1): the bound is infinite there, finite one binade away."""
    model = MODELS["default"]
    x, gy = np.array([[1.0, 1.0]]), np.array([[1.0, 0.0]])
    eps = float(np.nextafter(np.sqrt(2.0), 2.0))
    assert 2.0 < eps * eps and np.float32(eps) == np.float32(np.sqrt(2.0))
    err = absolute_errors(backward(OP, x, gy, model=model, eps=eps, grad_format="fp32")["gx"],
                          exact_outputs(OP, x, eps=eps, gy=gy)["gx"])
    assert err.max() > 0.2  # |gx| ≈ 1/√2: the branches differ by half of it
    assert np.isinf(backward_bound(OP, x, gy, model=model, eps=eps, grad_format="fp32").gx).all()
    for away in (eps / 2, eps * 2):
        assert np.isfinite(backward_bound(OP, x, gy, model=model, eps=away, grad_format="fp32").gx).all()
    # the forward is continuous there: its bound stays finite and holds
    y = forward(OP, x, model=model, eps=eps, out_format="fp32")
    assert (absolute_errors(y, exact_outputs(OP, x, eps=eps)["y"])
            <= forward_bound(OP, x, model=model, eps=eps, out_format="fp32").total).all()


def test_no_bound_where_one_over_eps_leaves_the_accumulator():
    """fp16 accumulation with eps = 2^-20: r̂ = 1/fl(eps) = 2^20 overflows fp16 (65504)."""
    x = np.array([[3.0, 4.0]]) * 2.0**-24
    model = MODELS["fp16_accum"]
    assert np.isinf(forward(OP, x, model=model, eps=2.0**-20, out_format="fp32")).all()
    assert np.isinf(forward_bound(OP, x, model=model, eps=2.0**-20, out_format="fp32").total).all()
    assert np.isfinite(forward_bound(OP, x, model=model, eps=2.0**-12, out_format="fp32").total).all()
