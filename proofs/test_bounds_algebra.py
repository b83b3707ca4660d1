"""Algebra behind normtheory/precision/bounds.py, proved with sympy and spot-checked in mpmath."""

import mpmath
import sympy as sp


def test_two_pass_mean_error_cancels_to_second_order():
    """Σ(c_i + δ)² = Σc_i² + d·δ² when Σc_i = 0 (step 2 of the two-pass derivation)."""
    d = 6
    c = sp.symbols(f"c0:{d - 1}")
    delta = sp.Symbol("delta")
    centred = list(c) + [-sum(c)]  # Σc = 0
    lhs = sum((ci + delta) ** 2 for ci in centred)
    rhs = sum(ci**2 for ci in centred) + d * delta**2
    assert sp.expand(lhs - rhs) == 0


def test_welford_update_increment():
    """(x − m_{j−1})(x − m_j) = (j − 1)/j · (x − m_{j−1})², with m_j = m_{j−1} + (x − m_{j−1})/j."""
    x, m, j = sp.symbols("x m j", positive=True)
    m_new = m + (x - m) / j
    assert sp.simplify((x - m) * (x - m_new) - (j - 1) / j * (x - m) ** 2) == 0


def test_chan_merge_is_exact():
    """M = Ma + Mb + δ²·na·nb/n is Σ(x − mean)² of the union (here na = 2, nb = 3)."""
    xs = sp.symbols("x0:5")
    a, b = xs[:2], xs[2:]

    def m2(values):
        mean = sum(values) / len(values)
        return sum((v - mean) ** 2 for v in values), mean

    ma2, ma = m2(a)
    mb2, mb = m2(b)
    total, _ = m2(xs)
    assert sp.simplify(ma2 + mb2 + (mb - ma) ** 2 * 2 * 3 / 5 - total) == 0


def test_welford_running_mean_error_recursion():
    """j·e_j ≤ (j − 1)·e_{j−1} + (j + c), e_1 = 0 gives e_j ≤ (j + 1)/2 + c (in units of u·X)."""
    i, j, c = sp.symbols("i j c", positive=True)
    total = sp.summation(i + c, (i, 2, j))  # j·e_j at most this
    closed = sp.simplify(total / j)
    gap = sp.simplify((j + 1) / 2 + c - closed)  # must be >= 0 for j >= 1
    assert sp.simplify(gap - (1 / j + c / j)) == 0


def test_inverse_square_root_perturbation_bound():
    """|(1 + t)^(−1/2) − 1| ≤ ρ/(2(1 − ρ)^(3/2)) for |t| ≤ ρ < 1 (mean value theorem)."""
    t = sp.Symbol("t")
    derivative = sp.diff((1 + t) ** sp.Rational(-1, 2), t)
    assert sp.simplify(derivative + sp.Rational(1, 2) * (1 + t) ** sp.Rational(-3, 2)) == 0
    # |f'| is largest at t = −ρ on [−ρ, ρ]; check the resulting bound numerically
    bound = sp.lambdify(t, t / (2 * (1 - t) ** sp.Rational(3, 2)), "mpmath")
    with mpmath.workprec(200):
        for rho in (mpmath.mpf("1e-7"), mpmath.mpf("0.01"), mpmath.mpf("0.5"), mpmath.mpf("0.9")):
            for s in (rho, -rho, rho / 3, -rho / 3):
                assert abs((1 + s) ** mpmath.mpf(-0.5) - 1) <= bound(rho)


def test_gamma_composition():
    """(1 + γ_a)(1 + γ_b) ≤ 1 + γ_{a+b} (Higham, Lemma 3.3), symbolically for k·u < 1."""
    u, a, b = sp.symbols("u a b", positive=True)
    gamma = lambda k: k * u / (1 - k * u)  # noqa: E731
    difference = sp.simplify((1 + gamma(a + b)) - (1 + gamma(a)) * (1 + gamma(b)))
    # the difference is a·b·u²·(...)/(...) with positive numerator and denominator for (a+b)u < 1
    numerator, denominator = sp.fraction(sp.factor(difference))
    assert sp.simplify(numerator - a * b * u**2) == 0 or sp.simplify(numerator + a * b * u**2) == 0
    spot = {u: sp.Rational(1, 2**24), a: 100, b: 37}
    assert difference.subs(spot) > 0
