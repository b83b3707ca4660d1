"""Deterministic reference cases: where float64-then-round is wrong, exact midpoints and
zeros, the algebraic identities in arbitrary precision, and error inputs from the registry."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from mp_oracle import forward_row, round_oracle

from normtheory.errors import UndecidedRounding, UsageError
from normtheory.formats import FORMATS
from normtheory.reference import correctly_rounded, evaluate
from normtheory.registry import REGISTRY

FP32, BF16 = FORMATS["fp32"], FORMATS["bf16"]


def numpy_layernorm(x, eps):
    centred = x - x.mean(axis=1, keepdims=True)
    return centred / np.sqrt((centred * centred).mean(axis=1, keepdims=True) + eps)


def test_fp32_layernorm_with_large_offset_where_float64_then_round_is_wrong():
    """d = 3000 (not a power of two), |mean|/std ≈ 1e6: float64 LayerNorm rounded to fp32
    misrounds; the fast path, the forced slow path and the mpmath oracle agree."""
    rng = np.random.default_rng(7)
    x = FP32.round_to_float64(1e6 + rng.standard_normal((16, 3000)))
    eps = 1e-5
    fast = FP32.to_float64(correctly_rounded("layernorm", x, format="fp32", eps=eps, affine="none")["y"])
    naive = FP32.round_to_float64(numpy_layernorm(x, eps))
    misrounded_rows = np.flatnonzero((naive != fast).any(axis=1))
    assert misrounded_rows.size > 0, "float64-then-round should misround somewhere here"
    hard = x[misrounded_rows[:2]]  # bit-compare the fast path with the forced slow path there
    slow = FP32.to_float64(correctly_rounded("layernorm", hard, format="fp32", eps=eps, affine="none", force_slow=True)["y"])
    assert np.array_equal(fast[misrounded_rows[:2]], slow)
    sample = rng.choice(3000, size=40, replace=False)
    oracle = forward_row("layernorm", x[misrounded_rows[0]], None, None, eps=eps, eps_mode="inside", affine="none", p=None,
                         d=3000)
    expected, ambiguous = round_oracle(np.array([oracle[j] for j in sample], dtype=object), FP32)
    assert not ambiguous.any()
    assert np.array_equal(fast[misrounded_rows[0], sample], expected)
    wrong = np.flatnonzero(naive[misrounded_rows[0]] != fast[misrounded_rows[0]])[:5]
    oracle_wrong, _ = round_oracle(np.array([oracle[j] for j in wrong], dtype=object), FP32)
    assert np.array_equal(fast[misrounded_rows[0], wrong], oracle_wrong)  # the oracle sides with us


@pytest.mark.parametrize("op", ["layernorm", "rmsnorm"])
def test_fp64_outputs_are_correctly_rounded_where_numpy_is_not(op):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 48)) * 3 + (5.0 if op == "layernorm" else 0.0)
    ours = correctly_rounded(op, x, format="fp64", eps=1e-5, affine="none")["y"]
    oracle = np.array([forward_row(op, row, None, None, eps=1e-5, eps_mode="inside", affine="none", p=None, d=48)
                       for row in x], dtype=object)
    expected, ambiguous = round_oracle(oracle, FORMATS["fp64"])
    assert not ambiguous.any()
    assert np.array_equal(ours, expected)
    if op == "layernorm":
        naive = numpy_layernorm(x, 1e-5)
    else:
        naive = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + 1e-5)
    assert np.count_nonzero(naive != ours) > 0, "plain float64 is not correctly rounded"


def test_constant_row_output_is_its_bias_rounded_to_even():
    """LayerNorm of a constant row is exactly b: an fp32 bias on a bf16 midpoint ties to even."""
    x = np.full((1, 4), 3.0)
    midpoints = np.array([1 + 2.0**-8, 1 + 3 * 2.0**-8, -(1 + 2.0**-8), 2.0**-130 * 3])
    y = correctly_rounded("layernorm", x, np.ones(4), midpoints, format="bf16", w_format="fp32", eps=1e-5)["y"]
    expected_even = [1.0, 1 + 2.0**-6, -1.0, BF16.round_to_float64(2.0**-130 * 3)]
    assert np.array_equal(BF16.to_float64(y)[0], expected_even)


def test_rational_results_on_midpoints_with_eps_zero():
    """RMSNorm with eps = 0 of a row with a perfect-square mean square is rational; scaled by
    an fp32 weight it lands exactly on fp8 midpoints, which tie to even."""
    x = np.array([[3.0, -3.0, 3.0, 3.0]])  # mean square 9, root 3: ŷ = ±1 exactly
    e4 = FORMATS["fp8_e4m3fn"]
    w = np.array([1.0625, 1.1875, -1.0625, 0.0])  # halfway between e4m3fn neighbours (spacing 0.125)
    y = correctly_rounded("rmsnorm", x, w, format="fp8_e4m3fn", w_format="fp32", eps=0.0, affine="weight")["y"]
    assert np.array_equal(e4.to_float64(y)[0], [1.0, -1.25, -1.0, 0.0])


def test_zero_row_with_eps_zero_is_nan_and_zero_signs_follow_ieee():
    x = np.array([[0.0, 0.0, 0.0], [-0.0, 2.0, 1.0]])
    y = FP32.to_float64(correctly_rounded("rmsnorm", x, np.array([1.0, 1.0, -1.0]), format="fp32", eps=0.0,
                                          affine="weight")["y"])
    assert np.isnan(y[0]).all()
    assert y[1, 0] == 0 and np.signbit(y[1, 0])  # (-0)·r·(+1) = -0
    y = FP32.to_float64(correctly_rounded("rmsnorm", np.array([[-0.0, 2.0]]), np.array([-1.0, 1.0]), format="fp32",
                                          affine="weight")["y"])
    assert y[0, 0] == 0 and not np.signbit(y[0, 0])  # (-0)·r·(-1) = +0


def test_non_finite_inputs_poison_what_they_reach():
    x = np.array([[1.0, np.inf, 2.0], [1.0, 2.0, 4.0]])
    out = correctly_rounded("layernorm", x, format="fp32", gy=np.ones((2, 3)))
    assert np.isnan(FP32.to_float64(out["y"])[0]).all() and np.isfinite(FP32.to_float64(out["y"])[1]).all()
    assert np.isnan(FP32.to_float64(out["gw"])).all()


def _mp_close(a, b, bits=200):
    return all(abs(u - v) <= mpmath.mpf(2) ** -bits * max(1, abs(u)) for u, v in zip(a, b))


def test_layernorm_is_rmsnorm_of_the_centred_row_in_arbitrary_precision():
    rng = np.random.default_rng(0)
    for eps_mode in ("inside", "outside"):
        for _ in range(5):
            x = rng.integers(-64, 64, size=8).astype(np.float64) / 4  # mean exact, so x − mean is too
            centred = x - x.mean()
            ln = evaluate("layernorm", x, eps=1e-5, eps_mode=eps_mode, affine="none", prec=400)["y"]
            rms = evaluate("rmsnorm", centred, eps=1e-5, eps_mode=eps_mode, affine="none", prec=400)["y"]
            assert _mp_close(ln, rms, bits=380)


def test_crmsnorm_is_rmsnorm_without_the_last_coordinate_for_zero_mean_rows():
    rng = np.random.default_rng(1)
    for eps_mode in ("inside", "outside"):
        for d in (2, 3, 7, 16):
            x = rng.integers(-100, 100, size=d).astype(np.float64)
            x[-1] = -x[:-1].sum()  # exactly zero mean
            crms = evaluate("crmsnorm", x[:-1], eps=1e-6, eps_mode=eps_mode, affine="none", prec=400)["y"]
            rms = evaluate("rmsnorm", x, eps=1e-6, eps_mode=eps_mode, affine="none", prec=400)["y"]
            assert _mp_close(crms, rms[:-1], bits=380)
            # and the identity fails for a row that is not zero-mean: the check can fail
            x[0] += 1
            crms = evaluate("crmsnorm", x[:-1], eps=1e-6, eps_mode=eps_mode, affine="none", prec=400)["y"]
            rms = evaluate("rmsnorm", x, eps=1e-6, eps_mode=eps_mode, affine="none", prec=400)["y"]
            assert not _mp_close(crms, rms[:-1], bits=100)


def test_lpnorm_p2_is_rmsnorm_and_p_large_tends_to_the_max_norm():
    x = np.array([0.5, -3.0, 1.25, 2.0])
    for eps_mode in ("inside", "outside"):
        lp = evaluate("lpnorm", x, eps=1e-6, eps_mode=eps_mode, affine="none", p=2.0, prec=300)["y"]
        rms = evaluate("rmsnorm", x, eps=1e-6, eps_mode=eps_mode, affine="none", prec=300)["y"]
        assert _mp_close(lp, rms, bits=280)
    inf = evaluate("lpnorm", x, eps=1e-6, affine="none", p=math.inf)["y"]
    big = evaluate("lpnorm", x, eps=1e-6, affine="none", p=2.0**20)["y"]
    assert _mp_close(inf, [v / 3.0 for v in x], bits=250)
    assert _mp_close(big, inf, bits=15)


@pytest.mark.parametrize("op", sorted(REGISTRY))
def test_registry_error_inputs_are_refused_with_a_clear_message(op):
    spec = REGISTRY[op]
    x = np.ones((2, 4))
    base = {"p": 2.0} if spec.takes_p else {}
    for error in spec.error_inputs:
        kwargs = {**base, **error.kwargs}
        with pytest.raises(UsageError, match=error.message_contains):
            correctly_rounded(op, x, format="fp32", **kwargs)


def test_unrepresentable_inputs_and_bad_shapes_are_refused():
    with pytest.raises(UsageError, match="not representable in bf16"):
        correctly_rounded("rmsnorm", np.array([[0.1, 1.0]]), format="bf16")
    with pytest.raises(UsageError, match="w must have shape"):
        correctly_rounded("rmsnorm", np.ones((2, 3)), np.ones(4), format="bf16")
    with pytest.raises(UsageError, match="unknown format"):
        correctly_rounded("rmsnorm", np.ones((2, 3)), format="fp12")


def test_undecidable_rounding_raises_instead_of_looping(monkeypatch):
    """With the exact ring out of reach and balls never decisive, the cap turns into an error."""
    from normtheory.reference import ziv

    monkeypatch.setattr(ziv, "round_ball", lambda ball, fmt: None)
    monkeypatch.setattr(ziv, "PRECISIONS", (64, 128))
    monkeypatch.setattr(ziv.SlowEvaluator, "_exact_value", lambda self, kind, i, j: None)
    with pytest.raises(UndecidedRounding, match="undecided at 128 bits"):
        correctly_rounded("rmsnorm", np.array([[1.0, 2.0, 3.0]]), format="fp32", force_slow=True)
