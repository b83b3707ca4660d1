"""The l2normalize reference (y = x / max(‖x‖₂, eps), torch.nn.functional.normalize over the last
dimension) against an independent mpmath oracle (tests/mp_oracle.py, 300 bits), on rows near the
floor, exact ties ‖x‖₂ = eps, subnormals and zero rows; the gradient's convention at the tie
against torch's own autograd; the fast path's refusal to guess the branch."""

from __future__ import annotations

import inspect

import mpmath
import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mp_oracle import PREC, forward_row, round_oracle, vjp

from normtheory.errors import UsageError
from normtheory.formats import FORMATS
from normtheory.reference import correctly_rounded
from normtheory.registry import AFFINE_MODES, EPS_MODES, get_spec

OP = "l2normalize"
FORMAT_NAMES = ["fp32", "bf16", "fp16", "fp8_e4m3fn", "fp64"]
# rows whose exact norm is a small integer: (3, 4) → 5, (1, 2, 2) → 3, (2, 3, 6) → 7
PYTHAGOREAN = [([3.0, 4.0], 5.0), ([1.0, 2.0, 2.0], 3.0), ([2.0, 3.0, 6.0], 7.0), ([-4.0, 0.0, 3.0], 5.0)]


@st.composite
def rows(draw):
    """(fmt, x, w, b, gy, params, kind): plain rows, rows scaled to the floor, exact ties (eps
    equal to the norm, or one float64 step either side), subnormal rows and zero rows."""
    fmt = FORMATS[draw(st.sampled_from(FORMAT_NAMES))]
    kind = draw(st.sampled_from(["plain", "near_floor", "tie", "subnormal", "zero"]))
    eps = draw(st.sampled_from([1e-12, 1e-6, 0.0, 0.25, 2.0**-40]))
    if kind == "tie":
        base, norm = draw(st.sampled_from(PYTHAGOREAN))
        scale = 2.0 ** draw(st.integers(-6, 2))
        x = np.array([base]) * scale
        eps = draw(st.sampled_from([np.nextafter(norm * scale, 0.0), norm * scale, np.nextafter(norm * scale, 9.0)]))
    else:
        n = draw(st.integers(1, 6))
        x = draw(hnp.arrays(np.float64, (draw(st.integers(1, 2)), n), elements=st.floats(-4, 4, width=64)))
        if kind == "near_floor":  # ‖x‖₂ within a factor 2 of eps, before the rounding to the format
            eps = draw(st.sampled_from([0.25, 2.0**-10, 1e-6]))
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            x = np.where(norms > 0, x / np.where(norms > 0, norms, 1.0), x) * eps * 2.0 ** draw(st.floats(-1, 1))
        elif kind == "subnormal":
            x = x * fmt.min_normal * 2.0 ** draw(st.integers(-fmt.precision, 0))
        elif kind == "zero":
            x = np.zeros_like(x) * draw(st.sampled_from([1.0, -1.0]))
    x = fmt.round_to_float64(x, saturate=True)
    n = x.shape[1]
    w = fmt.round_to_float64(draw(hnp.arrays(np.float64, n, elements=st.floats(-8, 8, width=64))))
    b = fmt.round_to_float64(draw(hnp.arrays(np.float64, n, elements=st.floats(-8, 8, width=64))))
    gy = fmt.round_to_float64(draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-8, 8, width=64))))
    params = dict(eps=float(eps), eps_mode=draw(st.sampled_from(EPS_MODES)), affine=draw(st.sampled_from(AFFINE_MODES)))
    return fmt, x, w, b, gy, params, kind


def assert_same(ours, expected, ambiguous, label):
    ours = np.asarray(ours, dtype=np.float64)
    same = (ours == expected) | (np.isnan(ours) & np.isnan(expected))
    bad = np.flatnonzero(~same & ~ambiguous)
    assert not bad.size, f"{label}: {bad.size} mismatches, first ours {ours.ravel()[bad[0]]!r} vs {expected.ravel()[bad[0]]!r}"


def test_registry_record_is_torchs_definition():
    spec = get_spec(OP)
    assert (spec.statistic, spec.eps_floor, spec.default_affine, spec.centred) == ("sum_square", "max", "none", False)
    assert spec.statistic_divisor(4096) == 1
    torch = pytest.importorskip("torch")
    assert inspect.signature(torch.nn.functional.normalize).parameters["eps"].default == spec.default_eps
    with pytest.raises(UsageError, match="p is only for lpnorm"):
        correctly_rounded(OP, np.ones((1, 2)), format="fp32", p=2.0)


@given(rows())
@example((FORMATS["fp32"], np.zeros((1, 3)), np.ones(3), np.zeros(3), np.ones((1, 3)),
          dict(eps=0.0, eps_mode="inside", affine="none"), "zero"))  # 0/0: NaN
@example((FORMATS["bf16"], np.array([[3 * 2.0**-42, 4 * 2.0**-42]]), np.ones(2), np.zeros(2), np.ones((1, 2)),
          dict(eps=5 * 2.0**-42, eps_mode="inside", affine="weight"), "tie"))
def test_forward_equals_the_mpmath_oracle(case):
    fmt, x, w, b, _, params, _ = case
    oracle = np.array([forward_row(OP, row, w, b, d=x.shape[1], p=None, **params) for row in x], dtype=object)
    expected, ambiguous = round_oracle(oracle, fmt)
    assert_same(fmt.to_float64(correctly_rounded(OP, x, w, b, format=fmt, **params)["y"]), expected, ambiguous, "y")


def projection_gradient(x, w, gy, affine):
    """gx = (g − ŷ·(ŷᵀg))/‖x‖₂, g = gy·w̃, at 300 bits: the gradient through the norm, written here
    from the formula (torch's convention at the tie), for rows where the floor is not active."""
    with mpmath.workprec(PREC):
        out = np.empty(x.shape, dtype=object)
        for i, row in enumerate(x):
            X = [mpmath.mpf(float(v)) for v in row]
            norm = mpmath.sqrt(mpmath.fsum(v * v for v in X))
            factor = [mpmath.mpf(1) if affine == "none" else (1 + mpmath.mpf(float(v)) if affine == "offset_weight"
                                                             else mpmath.mpf(float(v))) for v in w]
            g = [mpmath.mpf(float(gy[i, j])) * factor[j] for j in range(len(X))]
            y = [v / norm for v in X]
            inner = mpmath.fsum(gj * yj for gj, yj in zip(g, y))
            out[i] = [(gj - yj * inner) / norm for gj, yj in zip(g, y)]
    return out


@given(rows())
@example((FORMATS["bf16"], np.array([[1.0, 2.0, 2.0]]) * 2.0**-3, np.array([1.0, -2.0, 0.5]), np.zeros(3),
          np.array([[1.0, 0.5, -3.0]]), dict(eps=3 * 2.0**-3, eps_mode="inside", affine="weight"), "tie"))
@example((FORMATS["fp32"], np.array([[3.0, 4.0]]), np.ones(2), np.zeros(2), np.array([[1.0, 0.25]]),
          dict(eps=float(np.nextafter(5.0, 9.0)), eps_mode="inside", affine="none"), "tie"))  # just below the floor
def test_vjp_equals_the_oracle_and_follows_torch_at_the_tie(case):
    fmt, x, w, b, gy, params, kind = case
    assume(fmt.name != "fp64" and np.abs(x).max() < 1e30)
    norms = np.linalg.norm(x, axis=1)
    if params["eps_mode"] == "outside" or params["eps"] == 0:
        assume(np.all(norms > 0))  # not differentiable at the zero row there (tested as NaN / convention elsewhere)
    ours = correctly_rounded(OP, x, w, b, format=fmt, gy=gy, **params)
    at_tie = params["eps_mode"] == "inside" and np.all(norms == params["eps"]) and kind == "tie"
    if at_tie:  # ‖x‖₂ == eps exactly (the Pythagorean rows): the gradient goes through the norm
        expected, ambiguous = round_oracle(projection_gradient(x, w, gy, params["affine"]), fmt)
        assert_same(ours["gx"], expected, ambiguous, "gx at the tie")
        return
    if params["eps_mode"] == "inside":  # numerical differentiation needs a neighbourhood without the kink
        assume(np.all(np.abs(norms - params["eps"]) > 1e-3 * max(params["eps"], 1e-300)))
    gx, gw, gb = vjp(OP, x, w, b, gy, d=x.shape[1], p=None, **params)
    for name, oracle in (("gx", gx), ("gw", gw), ("gb", gb)):
        if name in ours:
            expected, ambiguous = round_oracle(oracle, fmt)
            assert_same(ours[name], expected, ambiguous, name)


@given(rows())
def test_fast_path_equals_the_forced_slow_path(case):
    fmt, x, w, b, gy, params, _ = case
    assume(fmt.name != "fp64")
    fast = correctly_rounded(OP, x, w, b, format=fmt, gy=gy, **params)
    slow = correctly_rounded(OP, x, w, b, format=fmt, gy=gy, force_slow=True, **params)
    for name in fast:
        assert np.array_equal(fmt.to_float64(fast[name]), fmt.to_float64(slow[name]), equal_nan=True), name


def test_the_fast_path_leaves_the_branch_at_the_tie_to_the_slow_path():
    """Σx² = eps² exactly: float64 bounds cannot tell the two sides apart, so the row escalates
    (an infinite float64 bound, no guess) and exact arithmetic takes the norm's branch."""
    x, eps = np.array([[3 * 2.0**-20, 4 * 2.0**-20]]), 5 * 2.0**-20
    out, stats = correctly_rounded(OP, x, format="fp32", gy=np.array([[1.0, 0.0]]), eps=eps, return_stats=True)
    assert stats["y"] == 2 and stats["gx"] == 2
    # projection (0.128, −0.096)/2^-20 ... exactly 0.128·2^20 and −0.096·2^20, rounded to fp32
    expected = FORMATS["fp32"].round_to_float64(np.array([0.128, -0.096]) * 2.0**20)
    assert np.array_equal(out["gx"][0].astype(np.float64), expected)
    away, stats = correctly_rounded(OP, x, format="fp32", gy=np.array([[1.0, 0.0]]), eps=2 * eps, return_stats=True)
    assert stats["y"] == 0 and stats["gx"] == 0  # far from the floor: decided in float64
    assert np.array_equal(away["gx"][0].astype(np.float64), FORMATS["fp32"].round_to_float64(np.array([2.0**20 / 10, 0.0])))


@pytest.mark.parametrize("side", ["below", "tie", "above"])
def test_gradient_convention_matches_torch_autograd(side):
    """torch's F.normalize in float64 at ‖x‖₂ = eps and one float64 step either side of it: the
    reference's gradient is torch's branch (clamp_min passes the gradient where norm >= eps)."""
    torch = pytest.importorskip("torch")
    x, norm = np.array([[3.0, 4.0]]) * 2.0**-20, 5 * 2.0**-20
    eps = {"below": np.nextafter(norm, 1.0), "tie": norm, "above": np.nextafter(norm, 0.0)}[side]
    gy = np.array([[1.0, 0.25]])
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.normalize(xt, p=2.0, dim=-1, eps=eps).backward(torch.tensor(gy))
    ours = correctly_rounded(OP, x, format="fp64", gy=gy, eps=eps)["gx"].astype(np.float64)
    projection = ((gy - (x / norm) * ((x / norm) * gy).sum()) / norm)[0]
    floor = gy[0] / eps
    expected = floor if side == "below" else projection
    other = projection if side == "below" else floor
    theirs = xt.grad.numpy()[0]
    # the branches differ by O(1) relative; torch's float64 autograd takes about ten roundings on this
    # 2-entry row without cancellation (yᵀg = 0.8, gx ∝ (0.52, −0.39)): ≤ 10·2^-53 ≈ 1.1e-15 relative
    assert np.allclose(theirs, ours[0], rtol=1e-13, atol=0) and np.allclose(ours[0], expected, rtol=1e-13, atol=0)
    assert not np.allclose(ours[0], other, rtol=1e-3, atol=0)
