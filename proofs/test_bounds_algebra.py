"""Algebra behind the forward bounds (normtheory/precision/bounds/forward.py and the step modules it
names: statistics.py, welford.py, scale.py, normalized.py, affine.py), proved with sympy and spot-checked in mpmath."""

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


# ---- backward (normtheory/precision/bounds/backward_gx.py, steps B2–B5) ---------------------

def _is_identity(lhs, rhs) -> bool:
    return sp.expand(lhs - rhs) == 0


def _computed_t():
    """T̂ = (ĝ − m̂)(1 + δ₁) − φ̂K̂(1 + δ₂) with ĝ = g + e_g, m̂ = m + e_m, φ̂ = φ + e_φ, K̂ = K + e_K."""
    g, m, phi, K, e_g, e_m, e_phi, e_K, d1, d2 = sp.symbols("g m phi K e_g e_m e_phi e_K delta1 delta2")
    t_hat = (g + e_g - (m + e_m)) * (1 + d1) - (phi + e_phi) * (K + e_K) * (1 + d2)
    return (g, m, phi, K, e_g, e_m, e_phi, e_K, d1, d2), t_hat


def test_backward_t_error_decomposition():
    """B4: T̂ − T = e_g − e_m − (φe_K + e_φK + e_φe_K) + δ₁(ĝ − m̂) − δ₂φ̂K̂, term by term."""
    (g, m, phi, K, e_g, e_m, e_phi, e_K, d1, d2), t_hat = _computed_t()
    exact = g - m - phi * K
    decomposition = (e_g - e_m - (phi * e_K + e_phi * K + e_phi * e_K)
                     + d1 * (g + e_g - m - e_m) - d2 * (phi + e_phi) * (K + e_K))
    assert _is_identity(t_hat - exact, decomposition)
    # the same check rejects the decomposition without the second-order product term
    assert not _is_identity(t_hat - exact, decomposition + e_phi * e_K)


def _e_t_bound(values, u, fma, cross_term=True):
    """E_T of step B4 from magnitudes (the formula in bounds/backward_gx.py)."""
    g, m, phi, K, E_g, E_m, E_phi, E_K = (abs(v) for v in values)
    u_product = 0 if fma else u
    cross = E_phi * E_K if cross_term else 0
    return (E_g + E_m + phi * E_K + E_phi * K + cross + u * (g + E_g + m + E_m)
            + u_product * (phi + E_phi) * (K + E_K))


def test_backward_t_error_bound_holds_at_every_corner():
    """|T̂ − T| ≤ E_T: T̂ is affine in each perturbation, so its extremes are at the corners of
    the box |e_·| ≤ E_·, |δ| ≤ u; all 2^6 corners are checked in mpmath for several points.
    The same check fails for the bound without E_φ·E_K (large relative errors show it)."""
    import itertools

    symbols, t_hat = _computed_t()
    g, m, phi, K, e_g, e_m, e_phi, e_K, d1, d2 = symbols
    f = sp.lambdify(symbols, t_hat - (g - m - phi * K), "mpmath")
    rng = __import__("random").Random(5)

    def worst_ratio(u, radii, cross_term, fma):
        worst = 0
        for _ in range(20):
            point = [mpmath.mpf(rng.uniform(-3, 3)) for _ in range(4)]
            sizes = [mpmath.mpf(radii * rng.uniform(0.1, 1)) for _ in range(4)]
            bound = _e_t_bound(point + sizes, u, fma, cross_term)
            for corner in itertools.product((-1, 1), repeat=6):
                errs = [s * c for s, c in zip(sizes, corner[:4])]
                deltas = [u * corner[4], 0 if fma else u * corner[5]]
                worst = max(worst, abs(f(*point, *errs, *deltas)) / bound)
        return worst

    with mpmath.workprec(200):
        u = mpmath.mpf(2) ** -24
        for fma in (True, False):
            assert worst_ratio(u, 1e-6, True, fma) <= 1
            assert worst_ratio(u, 0.5, True, fma) <= 1
        assert worst_ratio(u, 0.5, False, True) > 1  # the wrong bound is caught


def test_backward_output_scaling_decomposition():
    """B5: r(1 + θ)T̂ − rT = r(1 + θ)(T̂ − T) + rθT, so |·| ≤ r(1 + |θ|)E_T + |θ|·r|T|;
    and (1 + ρ_R)(1 + δ₃)(1 + δ₄) − 1 is at most ρ_G = (1 + ρ_R)(1 + u)² − 1 in size."""
    r, theta, t_hat, t = sp.symbols("r theta That T")
    assert _is_identity(r * (1 + theta) * t_hat - r * t, r * (1 + theta) * (t_hat - t) + r * theta * t)
    assert not _is_identity(r * (1 + theta) * t_hat - r * t, r * (t_hat - t) + r * theta * t)
    rho, d3, d4, u = sp.symbols("rho delta3 delta4 u")
    product = sp.lambdify((rho, d3, d4), (1 + rho) * (1 + d3) * (1 + d4) - 1, "mpmath")
    with mpmath.workprec(200):
        uu = mpmath.mpf(2) ** -24
        for rr in (mpmath.mpf("1e-7"), mpmath.mpf("0.01")):
            rho_g = (1 + rr) * (1 + uu) ** 2 - 1
            corners = [abs(product(s0 * rr, s1 * uu, s2 * uu)) for s0 in (-1, 1) for s1 in (-1, 1) for s2 in (-1, 1)]
            assert max(corners) <= rho_g
            assert max(corners) > (1 + rr) * (1 + uu) - 1  # one (1 + u) factor would not be enough


def test_backward_mean_scaling_decomposition():
    """B3: Â·(1/d)(1 + δ₀)(1 + δ₁) − A/d = ((Â − A)(1 + δ₀)(1 + δ₁) + A((1 + δ₀)(1 + δ₁) − 1))/d,
    so |m̂ − m| ≤ ((1 + γ₂)E_A + γ₂|A|)/d (+ η for an underflowing product)."""
    a_hat, a, d0, d1 = sp.symbols("Ahat A delta0 delta1")
    d = sp.Symbol("d", positive=True)
    lhs = a_hat / d * (1 + d0) * (1 + d1) - a / d
    assert _is_identity(lhs, ((a_hat - a) * (1 + d0) * (1 + d1) + a * ((1 + d0) * (1 + d1) - 1)) / d)
    assert not _is_identity(lhs, ((a_hat - a) + a * ((1 + d0) * (1 + d1) - 1)) / d)


def test_product_error_of_two_perturbed_factors():
    """B2/B7: ĝn̂ − gn = g·e_n + e_g·n + e_g·e_n (E_p), and its first-order-only variant is wrong."""
    g, n, e_g, e_n = sp.symbols("g n e_g e_n")
    assert _is_identity((g + e_g) * (n + e_n) - g * n, g * e_n + e_g * n + e_g * e_n)
    assert not _is_identity((g + e_g) * (n + e_n) - g * n, g * e_n + e_g * n)


def test_row_shared_error_decomposition():
    """B2' (bounds/backward_gx.weighted_n_error): with n̂_i = r(1 + θ)(c_i + δμ + f_i)(1 + ε_i) + e_i
    and n_i = r·c_i, Σa_i(n̂_i − n_i) = θΣa_i n_i + (1 + θ)rδμΣa_i + (1 + θ)rΣa_i f_i
    + (1 + θ)Σa_i(n_i + r(δμ + f_i))ε_i + Σa_i e_i — so the row's shared θ and δμ meet |Σa·n|
    and |Σa|, not Σ|a·n| and Σ|a|."""
    k = 3
    a, c, f, eps_, e = (sp.symbols(f"{name}0:{k}") for name in ("a", "c", "f", "epsilon", "e"))
    r, theta, dmu = sp.symbols("r theta delta_mu")
    n = [r * ci for ci in c]
    n_hat = [r * (1 + theta) * (c[i] + dmu + f[i]) * (1 + eps_[i]) + e[i] for i in range(k)]
    lhs = sum(a[i] * (n_hat[i] - n[i]) for i in range(k))
    rhs = (theta * sum(a[i] * n[i] for i in range(k)) + (1 + theta) * r * dmu * sum(a)
           + (1 + theta) * r * sum(a[i] * f[i] for i in range(k))
           + (1 + theta) * sum(a[i] * (n[i] + r * (dmu + f[i])) * eps_[i] for i in range(k))
           + sum(a[i] * e[i] for i in range(k)))
    assert _is_identity(lhs, rhs)
    wrong = rhs - theta * sum(a[i] * (n[i] + r * (dmu + f[i])) * eps_[i] for i in range(k))  # drops (1 + θ)
    assert not _is_identity(lhs, wrong)


def test_summation_error_is_a_sum_of_roundings_times_operand_sums():
    """The martingale behind the partial-sum (Azuma) bounds: for ŝ_k = (ŝ_{k−1} + x_k)(1 + δ_k),
    ŝ_n − Σx = Σ_k δ_k·(ŝ_{k−1} + x_k) exactly — each increment is δ_k times the exact sum of
    that step's (computed) operands, known before δ_k is drawn. Replacing those operand sums by
    the exact partial sums s_k is not an identity (it drops the second-order terms the bound
    covers with γ_h·A_k)."""
    xs = sp.symbols("x1:6")
    deltas = sp.symbols("delta2:6")
    computed, increments, increments_exact = xs[0], 0, 0
    partial = xs[0]
    for x, delta in zip(xs[1:], deltas):
        operands = computed + x
        partial = partial + x
        increments += delta * operands
        increments_exact += delta * partial
        computed = operands * (1 + delta)
    assert _is_identity(computed - sum(xs), increments)
    assert not _is_identity(computed - sum(xs), increments_exact)


def test_welford_running_mean_error_identities():
    """bounds/welford.py (recursion form): the lane step m̂_j = (m̂ + (x − m̂)(1 + θ₂)/j)(1 + α) and the merge
    m̂ = (m̂a + (m̂b − m̂a)·s·(1 + θ₃))(1 + α) have the exact error identities
    ε_j = ε_{j−1}(j − 1)/j + (x − m̂)θ₂/j + α(m̂ + q̂) and
    ε = εa(1 − s) + εb·s + (m̂b − m̂a)·s·θ₃ + α(m̂a + p̂); a variant that scales the carried
    error by 1 instead of (j − 1)/j is not an identity."""
    x, m, eps_prev, j, theta2, alpha = sp.symbols("x m epsilon_prev j theta2 alpha")
    m_hat = m + eps_prev
    q_hat = (x - m_hat) * (1 + theta2) / j
    lane_error = (m_hat + q_hat) * (1 + alpha) - (m + (x - m) / j)
    claimed = eps_prev * (j - 1) / j + (x - m_hat) * theta2 / j + alpha * (m_hat + q_hat)
    assert sp.simplify(lane_error - claimed) == 0
    assert sp.simplify(lane_error - (claimed + eps_prev / j)) != 0

    ma, mb, ea, eb, s, theta3 = sp.symbols("m_a m_b epsilon_a epsilon_b s theta3")
    p_hat = ((mb + eb) - (ma + ea)) * s * (1 + theta3)
    merge_error = ((ma + ea) + p_hat) * (1 + alpha) - (ma + (mb - ma) * s)
    claimed = ea * (1 - s) + eb * s + ((mb + eb) - (ma + ea)) * s * theta3 + alpha * ((ma + ea) + p_hat)
    assert sp.simplify(merge_error - claimed) == 0


def test_welford_lane_recursion_closed_form():
    """j·e_j ≤ (j − 1)·e_{j−1} + a + j·b, e_1 = 0 ⇒ e_k ≤ a + b(k + 1)/2 (bounds/welford.py, recursion form)."""
    i, k, a, b = sp.symbols("i k a b", positive=True)
    bound_times_k = sp.summation(a + i * b, (i, 2, k))  # k·e_k at most this
    gap = sp.simplify(k * (a + b * (k + 1) / 2) - bound_times_k)
    assert sp.simplify(gap - (a + b)) == 0  # a + b ≥ 0: the closed form holds
    wrong_gap = sp.simplify(k * (a + b * k / 2) - bound_times_k)  # b·k/2 would be too small
    assert sp.simplify(wrong_gap - (a + b - b * k / 2)) == 0  # negative for k > 2 + 2a/b
    assert wrong_gap.subs({k: 10, a: sp.Rational(1, 10), b: 1}) < 0
