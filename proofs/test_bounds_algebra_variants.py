"""Claim 7, wrong variants: each forward-bound step of proofs/test_bounds_algebra.py (the algebra
behind normtheory/precision/bounds/forward.py) fed a deliberately wrong version through the same check.

A separate file so that the steps themselves stay where bounds/forward.py's docstring points.
"""

import mpmath
import sympy as sp

from normtheory.symbolic.identities import decide


def test_two_pass_cancellation_needs_a_zero_mean():
    """Without Σc = 0 the cross term 2δΣc survives."""
    d = 4
    c = sp.symbols(f"c0:{d}")
    delta = sp.Symbol("delta")
    lhs = sum((ci + delta) ** 2 for ci in c)
    rhs = sum(ci**2 for ci in c) + d * delta**2
    verdict = decide(lhs, rhs, [{**dict(zip(c, (1, 2, 3, 5))), delta: sp.Rational(1, 3)}])
    assert verdict.refuted, verdict


def test_wrong_welford_increment_and_merge_weights_are_refuted():
    x, m, j = sp.symbols("x m j", positive=True)
    m_new = m + (x - m) / j
    wrong = decide((x - m) * (x - m_new), j / (j - 1) * (x - m) ** 2, [{x: 5, m: 2, j: 3}])
    assert wrong.refuted, wrong
    xs = sp.symbols("x0:5")

    def m2(values):
        mean = sum(values) / len(values)
        return sum((v - mean) ** 2 for v in values), mean

    (ma2, ma), (mb2, mb), (total, _) = m2(xs[:2]), m2(xs[2:]), m2(xs)
    point = [dict(zip(xs, (1, 4, -2, 3, 7)))]
    merged_wrong_weight = ma2 + mb2 + (mb - ma) ** 2 * 2 * 3 / 25  # na·nb/n² instead of na·nb/n
    assert decide(merged_wrong_weight, total, point).refuted


def test_first_order_inverse_square_root_bound_is_not_enough():
    """|(1 + t)^(−1/2) − 1| ≤ ρ/2 (the first-order term alone) fails at t = −ρ: the (1 − ρ)^(3/2)
    factor of the mean-value bound is needed."""
    with mpmath.workprec(200):
        rho = mpmath.mpf("0.5")
        assert abs((1 - rho) ** mpmath.mpf(-0.5) - 1) > rho / 2
        assert abs((1 - rho) ** mpmath.mpf(-0.5) - 1) <= rho / (2 * (1 - rho) ** mpmath.mpf(1.5))


def test_gamma_composition_does_not_give_a_smaller_index():
    """(1 + γ_a)(1 + γ_b) ≤ 1 + γ_{a+b−1} is false: the index cannot shrink."""
    u, a, b = sp.symbols("u a b", positive=True)
    gamma = lambda k: k * u / (1 - k * u)  # noqa: E731
    spot = {u: sp.Rational(1, 2**24), a: 100, b: 37}
    assert ((1 + gamma(a + b - 1)) - (1 + gamma(a)) * (1 + gamma(b))).subs(spot) < 0


def test_square_error_and_square_root_difference_identities():
    """(s + e)² − s² = e(2s + e) (CRMSNorm's (Σz)², one-pass μ̂²) and
    √a − √b = (a − b)/(√a + √b) (eps outside: |√a − √b| ≤ |a − b|/√b); wrong variants refuted."""
    s, e = sp.symbols("s e", real=True)
    assert decide((s + e) ** 2 - s**2, e * (2 * s + e), []).proven
    assert decide((s + e) ** 2 - s**2, e * (2 * s - e), [{s: 3, e: 1}]).refuted
    a, b = sp.symbols("a b", positive=True)
    assert decide(sp.sqrt(a) - sp.sqrt(b), (a - b) / (sp.sqrt(a) + sp.sqrt(b)), []).proven
    first_order = (a - b) / (2 * sp.sqrt(b))  # the linearisation is not the exact difference
    assert decide(sp.sqrt(a) - sp.sqrt(b), first_order, [{a: 4, b: 1}]).refuted
