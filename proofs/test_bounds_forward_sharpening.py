"""Algebra behind the sharper forward bounds of normtheory/precision/bounds/forward.py and
bounds/welford.py: the scale's exact largest deviation, the stopped-martingale fixed point of
probabilistic chain sums, and the adjoint split of Welford's error. Each claim is proved with
sympy and spot-checked in mpmath; a wrong variant of each is shown to fail."""

import mpmath
import sympy as sp

# ---- the scale: (1 + t)^(−1/2) and 1/(1 + t) on |t| ≤ ρ deviate most from 1 at t = −ρ ---------


def _largest_deviation_is_at_minus_rho(f):
    t, rho = sp.symbols("t rho", positive=True)
    # convex on t > −1 (second derivative positive): f(−ρ) + f(ρ) ≥ 2f(0) = 2, so
    # f(−ρ) − 1 ≥ 1 − f(ρ); f is decreasing, so those two are the extremes of |f − 1|
    second = sp.simplify(sp.diff(f(t - 1), t, 2))  # written on t > 0 for sympy's sign logic
    assert second.is_positive
    assert sp.simplify(sp.diff(f(t - 1), t)).is_negative
    with mpmath.workprec(200):
        for r in ("1e-7", "0.01", "0.3", "0.9"):
            r = mpmath.mpf(r)
            grid = [-r + 2 * r * k / 200 for k in range(201)]
            largest = max(abs(f(s) - 1) for s in grid)
            assert largest == f(-r) - 1
            assert f(-r) - 1 >= 1 - f(r)


def test_inverse_square_root_deviates_most_below():
    """bounds/scale.scale_error (eps inside): ρ_r = (1 − ρ_v)^(−1/2) − 1 exactly bounds |(v̂/v)^(−1/2) − 1|."""
    _largest_deviation_is_at_minus_rho(lambda s: (1 + s) ** sp.Rational(-1, 2) if isinstance(s, sp.Basic)
                                       else (1 + s) ** mpmath.mpf(-0.5))


def test_reciprocal_deviates_most_below():
    """bounds/scale.scale_error (eps outside): 1/(1 − ρ_d) − 1 bounds |den/dên − 1|."""
    _largest_deviation_is_at_minus_rho(lambda s: 1 / (1 + s))


def test_the_old_mean_value_bound_is_larger_and_the_symmetric_guess_is_wrong():
    with mpmath.workprec(100):
        for r in (mpmath.mpf("0.01"), mpmath.mpf("0.5")):
            exact = (1 - r) ** mpmath.mpf(-0.5) - 1
            assert exact <= r / (2 * (1 - r) ** mpmath.mpf(1.5))  # the form it replaces was sound
            # wrong variant: taking the deviation at +ρ under-estimates it
            assert 1 - (1 + r) ** mpmath.mpf(-0.5) < exact


# ---- chains: the stopped martingale's self-consistent E -------------------------------------


def test_chain_fixed_point_start():
    """toolkit/sums.py (the exact-terms chain): E₀ = λu‖s‖/(1 − λu√K) solves E = λu(‖s‖ + E√K), the Minkowski
    bound of λ‖u(|s| + E)‖, so E₀ ≥ λ‖c(E₀)‖ whenever λu√K < 1."""
    lam, u, norm_s, k, e = sp.symbols("lambda u S K E", positive=True)
    e0 = lam * u * norm_s / (1 - lam * u * sp.sqrt(k))
    assert sp.simplify(lam * u * (norm_s + e0 * sp.sqrt(k)) - e0) == 0
    # wrong variant: without the 1/(1 − λu√K) the start does not dominate its own bound
    wrong = lam * u * norm_s
    assert sp.simplify(lam * u * (norm_s + wrong * sp.sqrt(k)) - wrong) != 0
    # Minkowski, spot-checked: sqrt(Σ(s + E)²) ≤ ‖s‖ + E√K
    with mpmath.workprec(100):
        s = [mpmath.mpf(v) for v in (3, 1, 4, 1, 5, 9, 2, 6)]
        big_e = mpmath.mpf("0.7")
        lhs = mpmath.sqrt(sum((v + big_e) ** 2 for v in s))
        assert lhs <= mpmath.sqrt(sum(v * v for v in s)) + big_e * mpmath.sqrt(len(s))


# ---- Welford: the adjoint split (bounds/welford.py) -------------------------------------------


def test_welford_lane_step_error_split():
    """A lane step from (m + ε, M + E) with roundings e1..e5:
    δ̂ = x − m̂ + e1, q̂ = δ̂/j + e2, m̂' = m̂ + q̂ + e3, â = x − m̂' + e4, M̂' = δ̂·â + M̂ + e5.
    The new mean error is linear in (ε, e), and M̂' − M' is its linear part plus exactly
    (δ̂ − δ)(â − a): the coefficients are those of the reverse sweep in bounds/welford.py."""
    x, m, big_m, j = sp.symbols("x m M j", positive=True)
    eps_m, eps_big, e1, e2, e3, e4, e5 = sp.symbols("epsilon E e1:6")
    delta = x - m
    m_new = m + delta / j
    a = x - m_new
    d_hat = x - (m + eps_m) + e1
    q_hat = d_hat / j + e2
    m_hat = m + eps_m + q_hat + e3
    a_hat = x - m_hat + e4
    big_hat = d_hat * a_hat + big_m + eps_big + e5
    mean_error = sp.expand(m_hat - m_new)
    big_error = sp.expand(big_hat - (big_m + delta * a))
    errors = (eps_m, eps_big, e1, e2, e3, e4, e5)
    assert all(sp.diff(mean_error, v, 2) == 0 for v in errors)  # linear
    linear = sum(sp.diff(big_error, v).subs({w: 0 for w in errors}) * v for v in errors)
    second = (d_hat - delta) * (a_hat - a)
    assert sp.simplify(big_error - linear - second) == 0

    # the reverse sweep of bounds/welford.py, for the adjoint pair (ā_m, ā_M) of (m̂', M̂')
    def reverse(adj_m, adj_big):
        grad_after = adj_big * delta
        am_total = adj_m - grad_after
        grad_delta = adj_big * a + am_total / j
        coeffs = {e1: grad_delta, e2: am_total, e3: am_total, e4: grad_after, e5: adj_big,
                  eps_m: am_total - grad_delta, eps_big: adj_big}
        return coeffs

    for (adj_m, adj_big), error in (((1, 0), mean_error), ((0, 1), linear)):
        for symbol, coefficient in reverse(adj_m, adj_big).items():
            assert sp.simplify(sp.diff(error, symbol) - coefficient) == 0, symbol
    # wrong variant: a sweep without the mean's own path through δ̂ (the am_total/j term)
    # misses −δ/j in M's coefficient of e1
    assert sp.simplify(sp.diff(linear, e1) - a) != 0


def test_welford_merge_error_split():
    """Chan's merge of (ma + εa, Ma + Ea) and (mb + εb, Mb + Eb) with rounded constants ŝ = s + σ,
    ŵ = w + ω and roundings e6..e12: the mean error is linear, and M̂ − M is the linear part
    plus ŵ·(δ̂ − δ)² exactly; σ and ω enter as δ·σ and δ²·ω (the systematic D)."""
    ma, mb, big_a, big_b, s, w = sp.symbols("m_a m_b M_a M_b s w", positive=True)
    ea, eb, big_ea, big_eb, sig, om = sp.symbols("epsilon_a epsilon_b E_a E_b sigma omega")
    e6, e7, e8, e9, e10, e11, e12 = sp.symbols("e6:13")
    delta = mb - ma
    d_hat = (mb + eb) - (ma + ea) + e6
    q_hat = d_hat * (s + sig) + e7
    m_hat = ma + ea + q_hat + e8
    s9 = big_a + big_ea + big_b + big_eb + e9
    p10 = d_hat * d_hat + e10
    p11 = p10 * (w + om) + e11
    big_hat = s9 + p11 + e12
    mean_error = sp.expand(m_hat - (ma + delta * s))
    big_error = sp.expand(big_hat - (big_a + big_b + delta**2 * w))
    rounding = (ea, eb, big_ea, big_eb, e6, e7, e8, e9, e10, e11, e12)
    zero = {v: 0 for v in rounding}
    # with exact constants (σ = ω = 0) the mean is linear in the errors
    exact_constants = {sig: 0, om: 0}
    assert all(sp.diff(mean_error.subs(exact_constants), v, 2) == 0 for v in rounding)
    linear = sum(sp.diff(big_error, v).subs({**zero, **exact_constants}) * v for v in rounding)
    # the reverse sweep uses the rounded constants ŝ, ŵ; with them the split is exact
    linear_hat = sum(sp.diff(big_error, v).subs(zero) * v for v in rounding)
    systematic = delta**2 * om
    assert sp.simplify(big_error - linear_hat - (w + om) * (d_hat - delta) ** 2 - systematic) == 0
    assert sp.simplify(mean_error - sum(sp.diff(mean_error, v).subs(zero) * v for v in rounding)
                       - delta * sig) == 0
    # reverse sweep of bounds/welford.py (ŝ = s + σ, ŵ = w + ω)
    for adj_m, adj_big, error in ((1, 0, mean_error), (0, 1, linear_hat)):
        grad_p10 = adj_big * (w + om)
        grad_delta = adj_m * (s + sig) + 2 * delta * grad_p10
        coeffs = {e6: grad_delta, e7: adj_m, e8: adj_m, e9: adj_big, e10: grad_p10, e11: adj_big,
                  e12: adj_big, ea: adj_m - grad_delta, eb: grad_delta, big_ea: adj_big, big_eb: adj_big}
        for symbol, coefficient in coeffs.items():
            assert sp.simplify(sp.diff(error, symbol).subs(zero) - coefficient) == 0, symbol
    # wrong variant: Chan's δ² term linearised with w instead of the rounded ŵ leaves ω·2δ(δ̂ − δ)
    assert sp.simplify(big_error - linear - (w + om) * (d_hat - delta) ** 2 - systematic) != 0
