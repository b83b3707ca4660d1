"""The double-word midpoint tier (reference/midpoint.py, doubleword.py), proven against exact
rational arithmetic written here from the definitions, and against the arb path end to end.

What is checked:
- each double-word operation's claimed bound holds against Fractions (hypothesis, subnormals,
  huge spreads), and deliberately wrong variants (bound halved, rounding terms dropped,
  propagation dropped) are violated on inputs built so that one rounding dominates;
- the discriminant D = d·A² − B²·T and A (the tier's whole certificate) are within their
  tracked bounds of the exact values, for LayerNorm/RMSNorm, eps inside/outside, every affine
  mode; the same wrong variants are caught there;
- end to end: outputs with the tier equal the forced arb/exact path (bit for bit) on the
  families the tier exists for (eps-dominated rows, exact zeros at fp16 offsets, exact ties,
  subnormal outputs), and the tier did decide elements there.
What it cannot detect: a wrong derivation shared by the test's Fractions and the code is
ruled out only by the end-to-end comparison with arb (formulas.py, written independently).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from normtheory.formats import FORMATS
from normtheory.reference import correctly_rounded
from normtheory.reference import doubleword as dw
from normtheory.reference import midpoint as mp

F = Fraction


def _exact(hi, lo):
    return F(float(hi)) + F(float(lo))


def _normalized_words(draw_float):
    """Strategy of double words hi + lo with |lo| ≤ u·|hi| (as TwoSum leaves them)."""
    @st.composite
    def words(draw):
        hi = draw(draw_float)
        fraction = draw(st.floats(-1.0, 1.0))
        lo = float(np.float64(hi) * dw.U * fraction) if hi != 0 else 0.0
        hi2, lo2 = dw.two_sum(hi, lo)
        return hi2, lo2
    return words()


FINITE = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e150, max_value=1e150, allow_subnormal=True)
WORDS = _normalized_words(FINITE)


@given(WORDS, WORDS)
def test_add_error_is_within_its_bound(a, b):
    hi, lo, err = dw.add(a[0], a[1], 0.0, b[0], b[1], 0.0, 1.0)
    assert abs(_exact(hi, lo) - (_exact(*a) + _exact(*b))) <= F(err) * F(dw.BOUND_SAFETY)


@given(WORDS, WORDS)
def test_mul_error_is_within_its_bound(a, b):
    hi, lo, err = dw.mul(a[0], a[1], 0.0, b[0], b[1], 0.0, 1.0, 1.0)
    assert abs(_exact(hi, lo) - _exact(*a) * _exact(*b)) <= F(err) * F(dw.BOUND_SAFETY)


@given(WORDS, WORDS, st.floats(0, 1e-3), st.floats(0, 1e-3))
def test_input_errors_propagate_through_mul(a, b, rel_a, rel_b):
    """Inputs known only within err_a, err_b: the worst corners of both boxes stay within the bound."""
    err_a = abs(a[0]) * rel_a
    err_b = abs(b[0]) * rel_b
    hi, lo, err = dw.mul(a[0], a[1], err_a, b[0], b[1], err_b, 1.0, 1.0)
    for sa in (-1, 1):
        for sb in (-1, 1):
            exact = (_exact(*a) + sa * F(err_a)) * (_exact(*b) + sb * F(err_b))
            assert abs(_exact(hi, lo) - exact) <= F(err) * F(dw.BOUND_SAFETY)


def test_exact_operations_report_no_error():
    for a, b in ((3.0, 5.0), (2.0**-140, 2.0**-140), (1e10, -1e10), (0.0, 7.0)):
        assert dw.add(a, 0.0, 0.0, b, 0.0, 0.0, 1.0)[2] == 0.0
        assert dw.mul(a, 0.0, 0.0, b, 0.0, 0.0, 1.0, 1.0)[2] == 0.0
    assert dw.is_exact_zero(*dw.add(1e10, 0.0, 0.0, -1e10, 0.0, 0.0, 1.0))


def test_underflowing_products_get_the_slack():
    tiny = 2.0**-540
    p, e = dw.two_prod(tiny * (1 + 2.0**-30), tiny * (1 + 2.0**-31))  # the product is below binary64's range
    hi, lo, err = dw.mul(tiny * (1 + 2.0**-30), 0.0, 0.0, tiny * (1 + 2.0**-31), 0.0, 0.0, 1.0, 1.0)
    assert err > 0
    exact = F(tiny * (1 + 2.0**-30)) * F(tiny * (1 + 2.0**-31))
    assert abs(_exact(hi, lo) - exact) <= F(err)


def test_wrong_operation_bounds_are_violated():
    """One rounding dominates: the exact error equals the bound, so half of it (or none) fails."""
    a = (1.0, 2.0**-53 * (1 - 2.0**-52))
    b = (2.0**-60, 2.0**-114 * 3)  # a_lo + b_lo needs more than 53 bits: one rounding
    for scale in (0.5, 0.0):
        hi, lo, err = dw.add(*a, 0.0, *b, 0.0, scale)
        assert abs(_exact(hi, lo) - (_exact(*a) + _exact(*b))) > F(err) * F(dw.BOUND_SAFETY), scale
    c = (1.0 + 2.0**-30, 2.0**-70)  # a_hi·b_lo + a_lo·b_hi needs more than 53 bits
    d = (1.0 + 2.0**-29, 2.0**-75 * 3)
    for scale in (0.5, 0.0):
        hi, lo, err = dw.mul(*c, 0.0, *d, 0.0, scale, 1.0)
        assert abs(_exact(hi, lo) - _exact(*c) * _exact(*d)) > F(err) * F(dw.BOUND_SAFETY), scale


# ---- the tier's certificate: A and D --------------------------------------------------------
def _exact_certificate(x, j, w_factor, m, b, d, eps, inside, centred):
    """(A, D) from the definitions (module docstring of midpoint.py), in Fractions."""
    X = [F(float(v)) for v in x]
    S = sum(X, F(0))
    C = [F(d) * v - S for v in X] if centred else X
    Q = sum((c * c for c in C), F(0))
    A0 = C[j] * w_factor
    B = F(m) - F(b)
    if inside:
        T = Q + F(d) ** (3 if centred else 1) * F(eps)
        A = A0
    else:
        T = Q
        A = A0 - (F(d) if centred else F(1)) * B * F(eps)
    return A, F(d) * A * A - B * B * T


def _tier_certificate(x, j, affine, w, m, b, d, eps, inside, centred, rs=1.0, ps=1.0, quick=False):
    f_hi, f_lo = mp.weight_factor_words(affine, np.array([w]))
    if quick:
        s, q = (0.0, 0.0, 0.0), mp.quick_square_sum(x, rs)
    else:
        sums = mp.exact_row_sums(x, d, centred, rs, ps)
        s, q = sums[:3], sums[3:]
    t = mp.row_term(*q, d, eps, inside, centred, rs, ps)
    c = mp.centred_entry(float(x[j]), d, centred, *s, rs)
    a0 = dw.mul(*c, f_hi[0], f_lo[0], 0.0, rs, ps)
    b_hi, b_lo = dw.two_sum(m, -b)
    return mp.discriminant(*a0, *t, b_hi, b_lo, d, eps, inside, centred, rs, ps), _exact(f_hi[0], f_lo[0])


def _within(value_triple, exact):
    hi, lo, err = value_triple
    return abs(_exact(hi, lo) - exact) <= F(err) * F(dw.BOUND_SAFETY)


@st.composite
def certificate_cases(draw):
    centred = draw(st.booleans())
    n = draw(st.integers(2, 12))
    spread = draw(st.integers(0, 120))  # binades between the largest and smallest entries
    fmt = FORMATS[draw(st.sampled_from(["fp32", "bf16", "fp16"]))]
    mant = draw(st.lists(st.floats(0.5, 2.0), min_size=n, max_size=n))
    expo = draw(st.lists(st.integers(-spread, 0), min_size=n, max_size=n))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=n, max_size=n))
    offset = draw(st.sampled_from([0.0, 1e4, -3e6]))
    x = fmt.round_to_float64(np.array([s * m_ * 2.0**e for s, m_, e in zip(signs, mant, expo)]) + offset)
    x = np.where(np.isfinite(x), x, 0.0)
    j = draw(st.integers(0, n - 1))
    affine = draw(st.sampled_from(["none", "weight", "offset_weight", "weight_bias"]))
    w = float(fmt.round_to_float64(np.array([draw(st.floats(-8, 8))]))[0])
    b = float(fmt.round_to_float64(np.array([draw(st.floats(-8, 8))]))[0]) if affine == "weight_bias" else 0.0
    eps = draw(st.sampled_from([1e-5, 1e-6, 0.0, 2.0**-40, 0.25]))
    m = float(np.float32(draw(st.floats(-4, 4)))) * 1.5  # any dyadic stand-in for a midpoint
    return x, j, affine, w, m, b, n, eps, draw(st.booleans()), centred


@given(certificate_cases())
def test_the_certificate_is_within_its_bounds(case):
    x, j, affine, w, m, b, d, eps, inside, centred = case
    (a_hi, a_lo, a_err, d_hi, d_lo, d_err), w_factor = _tier_certificate(x, j, affine, w, m, b, d, eps, inside, centred)
    A, D = _exact_certificate(x, j, w_factor, m, b, d, eps, inside, centred)
    assert _within((a_hi, a_lo, a_err), A)
    assert _within((d_hi, d_lo, d_err), D)
    if not centred:  # the quick square sum gives a certificate as sound
        (_, _, _, qd_hi, qd_lo, qd_err), _ = _tier_certificate(x, j, affine, w, m, b, d, eps, inside, centred,
                                                                quick=True)
        assert _within((qd_hi, qd_lo, qd_err), D)


# one rounding dominates each: Q needs 3 words (1 + 2^-120 + 2^-240), or S does (LayerNorm)
DOMINATED = [
    (np.array([1.0, 2.0**-60, 2.0**-120]), False),
    (np.array([3.0, 2.0**-60, 2.0**-110]), True),
]


@pytest.mark.parametrize("x, centred", DOMINATED)
@pytest.mark.parametrize("variant", [dict(rs=0.5), dict(rs=0.0), dict(ps=0.0), dict(rs=0.5, ps=0.5)])
def test_wrong_certificate_bounds_are_violated(x, centred, variant):
    """The nominal bound holds, and each weakened variant fails on an input where the captured
    rounding carries through to D (so the variants are not merely conservative slack)."""
    d, eps, m = x.size, 2.0**-40, 1.5
    A, D = _exact_certificate(x, 0, F(1), m, 0.0, d, eps, True, centred)
    nominal, _ = _tier_certificate(x, 0, "none", 1.0, m, 0.0, d, eps, True, centred)
    assert _within(nominal[3:], D)
    wrong, _ = _tier_certificate(x, 0, "none", 1.0, m, 0.0, d, eps, True, centred, **variant)
    assert not _within(wrong[3:], D)


# ---- end to end: the tier against arb --------------------------------------------------------
def _both(op, x, fmt, **params):
    fast, stats = correctly_rounded(op, x, format=fmt, return_stats=True, **params)
    slow = correctly_rounded(op, x, format=fmt, force_slow=True, **params)
    return FORMATS[fmt].to_float64(fast["y"]), FORMATS[fmt].to_float64(slow["y"]), stats


@pytest.mark.parametrize("fmt", ["bf16", "fp32"])
def test_eps_dominated_rows_are_decided_by_the_tier_and_agree_with_arb(fmt):
    from normtheory.families import draw_rows

    x = draw_rows("tiny", np.random.default_rng(11), 3, 96, FORMATS[fmt])
    fast, slow, stats = _both("rmsnorm", x, fmt, eps=1e-6, affine="none")
    assert stats["y_midpoint_tier"] > 0 and stats["y"] == 0  # the tier, not arb, decided them
    assert np.array_equal(fast, slow)


def test_exact_zeros_at_fp16_offsets_are_proven_zero():
    """LayerNorm rows of fp16 values near 1e4 whose mean is exact: x_j = mean gives y = 0, or
    y = b exactly (here an fp16 midpoint, which ties to even)."""
    x = np.full((1, 16), 10000.0)
    x[0, :8] += 8.0
    x[0, 8:] -= 8.0
    x[0, 3] = 10000.0
    x[0, 11] = 10000.0
    for affine, b in (("none", None), ("weight_bias", np.full(16, 3 * 2.0**-25))):
        kwargs = dict(eps=1e-5, affine=affine, w_format="fp32")
        w = None if b is None else np.ones(16)
        fast, stats = correctly_rounded("layernorm", x, w, b, format="fp16", return_stats=True, **kwargs)
        slow = correctly_rounded("layernorm", x, w, b, format="fp16", force_slow=True, **kwargs)
        assert stats["y_midpoint_tier"] == 2 and stats["y"] == 0
        assert np.array_equal(fast["y"].view(np.uint16), slow["y"].view(np.uint16))  # signed zeros too
        if b is not None:
            assert fast["y"][0, 3] == 2.0**-23  # the even neighbour of 1.5·2^-24


def test_exact_ties_go_to_even():
    """y = ±w exactly on bf16 midpoints (RMSNorm, eps = 0, constant magnitude): D = 0 with no
    error, so the tier proves the tie and rounds to even, as the exact ring does."""
    x = np.array([[3.0, -3.0, 3.0, 3.0, -3.0, 3.0]])
    w = np.array([1 + 2.0**-8, 1 + 3 * 2.0**-8, -(1 + 2.0**-8), 2.0**-130 * 3, 5 + 2.0**-6, 1.0])
    fast, stats = correctly_rounded("rmsnorm", x, w, format="bf16", w_format="fp32", eps=0.0, affine="weight",
                                    return_stats=True)
    expected = FORMATS["bf16"].round_to_float64(np.sign(x[0]) * w)  # y = ±w exactly; FloatFormat's RNE
    assert np.array_equal(FORMATS["bf16"].to_float64(fast["y"])[0], expected)
    assert stats["y_midpoint_tier"] >= 4 and stats["y"] == 0


@given(st.integers(0, 2**32 - 1), st.sampled_from(["bf16", "fp16", "fp32"]), st.sampled_from(["layernorm", "rmsnorm"]),
       st.sampled_from(["tiny", "near_constant", "offset_1e4", "constant"]), st.sampled_from(["inside", "outside"]),
       st.sampled_from(["none", "weight_bias", "offset_weight"]))
def test_hard_families_agree_with_arb(seed, fmt, op, family, eps_mode, affine):
    from normtheory.families import draw_rows

    rng = np.random.default_rng(seed)
    f = FORMATS[fmt]
    x = draw_rows(family, rng, 2, 24, f)
    w = f.round_to_float64(rng.standard_normal(24))
    b = f.round_to_float64(rng.standard_normal(24) * 2.0 ** rng.integers(-30, 2))
    kwargs = dict(eps=1e-6, eps_mode=eps_mode, affine=affine)
    fast = correctly_rounded(op, x, w, b, format=fmt, **kwargs)["y"]
    slow = correctly_rounded(op, x, w, b, format=fmt, force_slow=True, **kwargs)["y"]
    assert np.array_equal(f.to_float64(fast), f.to_float64(slow), equal_nan=True)
    assert np.array_equal(np.signbit(f.to_float64(fast)), np.signbit(f.to_float64(slow)))


def test_element_entry_point_matches_the_row_resolution():
    """decide_elements (exact sums only, one element at a time) decides what the row pass left
    the same way: on eps-dominated bf16 rows, against arb."""
    from normtheory.families import draw_rows
    from normtheory.reference.rowpass import STRADDLES, forward_rows

    fmt = FORMATS["bf16"]
    x = draw_rows("tiny", np.random.default_rng(5), 2, 64, fmt)
    n = x.shape[1]
    rounded, status, *_ = forward_rows(centred=False, x=x, d=n, eps=1e-6, inside=True, affine="none", w=np.ones(n),
                                       factor=np.ones(n), factor_err=np.zeros(n), bias=np.zeros(n), has_bias=False,
                                       fmt=fmt, check_x=True, midpoint_tier=False)
    rows, cols = np.nonzero(status == STRADDLES)
    assert rows.size > 0
    values = mp.decide_elements(centred=False, x=x, d=n, eps=1e-6, inside=True, affine="none", w=np.ones(n),
                                b=np.zeros(n), fmt=fmt, rows=rows, cols=cols, slot=rounded[rows, cols],
                                straddles=np.ones(rows.size, bool))
    slow = fmt.to_float64(correctly_rounded("rmsnorm", x, format="bf16", eps=1e-6, affine="none", force_slow=True)["y"])
    assert not np.isnan(values).any()
    assert np.array_equal(values, slow[rows, cols])
    assert math.isfinite(float(values.sum()))
