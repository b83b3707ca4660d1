"""Algebra behind the additions to the backward bounds (normtheory/precision/bounds/backward_gx.py,
backward_weights.py): eps outside the root
(B8) and the probabilistic column sums (P2, P3); sympy identities, mpmath corner checks."""

import itertools
import random

import mpmath
import numpy as np
import sympy as sp

from normtheory.formats import FORMATS


def _is_identity(lhs, rhs):
    return sp.expand(lhs - rhs) == 0


def test_outside_factor_product_decomposition():
    """B8: ρ̂K̂(1 + δ) − ρK = ρ̂(K̂ − K) + (ρ̂ − ρ)K + δρ̂K̂, so with |ρ̂ − ρ| ≤ E_ρ, |K̂ − K| ≤ E_K:
    |·| ≤ (ρ + E_ρ)E_K + E_ρ|K| + u(ρ + E_ρ)(|K| + E_K). Dropping the rounding term is wrong."""
    rho_hat, rho, K_hat, K, delta = sp.symbols("rhohat rho Khat K delta")
    lhs = rho_hat * K_hat * (1 + delta) - rho * K
    assert _is_identity(lhs, rho_hat * (K_hat - K) + (rho_hat - rho) * K + delta * rho_hat * K_hat)
    assert not _is_identity(lhs, rho_hat * (K_hat - K) + (rho_hat - rho) * K)


def test_outside_factor_bound_holds_at_every_corner():
    """ρ̂ = (den + e_d)/(σ + e_s)·(1 + δ) is monotone in each of e_d, e_s, δ, so its extremes over
    |e_d| ≤ E_den, |e_s| ≤ E_σ < σ, |δ| ≤ u are at the corners; the bound of
    `_outside_factor_bound` (the interval [(den − E_den)/(σ + E_σ), (den + E_den)/(σ − E_σ)], then
    + u·hi) covers all of them, and without the u·hi term it does not."""
    rng = random.Random(3)
    with mpmath.workprec(200):
        u = mpmath.mpf(2) ** -24
        worst, worst_without_rounding = 0, 0
        for _ in range(200):
            sigma = mpmath.mpf(10) ** rng.uniform(-4, 2)
            eps = mpmath.mpf(10) ** rng.uniform(-8, -1)
            den = sigma + eps
            E_s = sigma * mpmath.mpf(10) ** rng.uniform(-8, -1)
            E_d = den * mpmath.mpf(10) ** rng.uniform(-8, -1)
            rho = den / sigma
            hi, lo = (den + E_d) / (sigma - E_s), (den - E_d) / (sigma + E_s)
            bound = max(hi - rho, rho - lo) + u * hi
            without = max(hi - rho, rho - lo)
            for cd, cs, cr in itertools.product((-1, 1), repeat=3):
                value = (den + cd * E_d) / (sigma + cs * E_s) * (1 + cr * u)
                worst = max(worst, abs(value - rho) / bound)
                worst_without_rounding = max(worst_without_rounding, abs(value - rho) / without)
        assert worst <= 1 + mpmath.mpf(2) ** -150  # attained at the corner hi·(1 + u): 200-bit noise only
        assert worst_without_rounding > 1


def test_row_shared_scale_of_r():
    """P2: (1 + θ')(1 + α) − 1 = θ' + α + θ'α. θ' (scale s') and α (|α| ≤ α₀, independent) give
    θ' + α the scale sqrt(s'² + α₀²); |θ'α| ≤ α₀|θ'| has scale α₀s'; scales of dependent terms
    add: sqrt(α₀² + s'²) + α₀s', which is at most the worst-case-style α₀ + s' + α₀s'."""
    theta, alpha = sp.symbols("theta alpha")
    assert _is_identity((1 + theta) * (1 + alpha) - 1, theta + alpha + theta * alpha)
    a0, s = sp.symbols("alpha0 s", positive=True)
    gap = (a0 + s + a0 * s) - (sp.sqrt(a0**2 + s**2) + a0 * s)
    assert sp.simplify((a0 + s) ** 2 - (a0**2 + s**2) - 2 * a0 * s) == 0  # so gap ≥ 0
    assert all(gap.subs({a0: a, s: b}) >= 0 for a, b in [(1, 2), (3, 0.1), (1e-7, 5e-7)])


def test_a_rounding_errs_by_at_most_half_an_ulp_of_its_operand_sum():
    """P3's increments: |RN(w) − w| ≤ ½ulp(w) = u·2^⌊log2|w|⌋ ≤ u|w|, checked for random binary64 w
    over every binade of fp16 and bf16 (subnormals included) with the formats' own RNE casts;
    the stronger u·2^⌊log2|w|⌋/2 fails (the bound is attained up to the tie)."""
    rng = np.random.default_rng(0)
    for name in ("fp16", "bf16"):
        fmt = FORMATS[name]
        exponents = rng.uniform(fmt.emin - fmt.precision, fmt.emax, 200_000)
        w = np.exp2(exponents) * rng.choice([-1.0, 1.0], exponents.shape)
        error = np.abs(fmt.round_to_float64(w) - w)
        half_ulp = 0.5 * fmt.ulp(w)
        assert (error <= half_ulp).all()
        assert (error > 0.5 * half_ulp).any()
        normal = np.abs(w) >= fmt.min_normal
        assert (half_ulp[normal] <= fmt.unit_roundoff * np.abs(w[normal])).all()


def test_gx_probabilistic_final_roundings():
    """B5, probabilistic: gx̂ = fl(fl(T̂)·r̂) with fl(T̂) = T̂ + e₃, r̂ = r(1 + θ) and the product's
    rounding e₄: gx̂ − rT = (T̂ − T + e₃)·r(1 + θ) + θ·rT + e₄ exactly, so |·| ≤ r(1 + ρ_R)(E_T + |e₃|)
    + ρ_R·r|T| + |e₄|; leaving out θ·rT is wrong."""
    T_hat, T, e3, e4, r, theta = sp.symbols("That T e3 e4 r theta")
    gx_hat = (T_hat + e3) * r * (1 + theta) + e4
    assert _is_identity(gx_hat - r * T, (T_hat - T + e3) * r * (1 + theta) + theta * r * T + e4)
    assert not _is_identity(gx_hat - r * T, (T_hat - T + e3) * r * (1 + theta) + e4)


def test_product_sum_decomposition():
    """B2, probabilistic (bounds/backward_gx.product_sum_subgaussian): with n = r·c, n̂ = r(1 + θ)(c + δμ + f + s) + e' + e
    and ĝ = g + ρ + l, per term ĝn̂ − gn = θ·gn + (1 + θ)rδμ·g + [r·g·s + g·e' + ρ·n̂]
    + [(1 + θ)r·g·f + θ·r·g·s + g·e + l·n̂]: the shared errors, the three martingale increments and
    the linear rest. Without the second-order θ·r·g·s the split is wrong."""
    g, rho, l, r, c, theta, dmu, f, s, e1, e = sp.symbols("g rho l r c theta dmu f s e1 e")
    n = r * c
    n_hat = r * (1 + theta) * (c + dmu + f + s) + e1 + e
    g_hat = g + rho + l
    shared = theta * g * n + (1 + theta) * r * dmu * g
    increments = r * g * s + g * e1 + rho * n_hat
    rest = (1 + theta) * r * g * f + theta * r * g * s + g * e + l * n_hat
    assert _is_identity(g_hat * n_hat - g * n, shared + increments + rest)
    assert not _is_identity(g_hat * n_hat - g * n, shared + increments + rest - theta * r * g * s)


def test_row_magnitude_budget_split():
    """P4: gw's own two statements (λ = 4.5, bf16's u) and ROW_STATEMENTS·R statements at
    λ_R = row_statement_lambda(R, u) fail together with probability below FAILURE_PROBABILITY,
    and λ_R is the smallest λ with that per-statement failure (checked in 60-digit arithmetic)."""
    from normtheory.precision.bounds.backward import FAILURE_PROBABILITY
    from normtheory.precision.bounds.backward_weights import ROW_MAGNITUDE_BUDGET, ROW_STATEMENTS, row_statement_lambda
    from normtheory.precision.toolkit.rounding import LAMBDA

    with mpmath.workdps(60):
        for u in (mpmath.mpf(2) ** -24, mpmath.mpf(2) ** -11, mpmath.mpf(2) ** -8):
            own = 2 * 2 * mpmath.exp(-(LAMBDA * (1 - u)) ** 2 / 2)
            assert own < 2 * mpmath.mpf("8.8e-5")
            for rows in (1, 2, 64, 1000, 10**6):
                lam = mpmath.mpf(row_statement_lambda(rows, float(u)))
                rows_failure = ROW_STATEMENTS * rows * 2 * mpmath.exp(-(lam * (1 - u)) ** 2 / 2)
                assert abs(rows_failure / ROW_MAGNITUDE_BUDGET - 1) < 1e-12
                assert own + rows_failure < FAILURE_PROBABILITY
                smaller = lam * (1 - mpmath.mpf(2) ** -30)
                assert ROW_STATEMENTS * rows * 2 * mpmath.exp(-(smaller * (1 - u)) ** 2 / 2) > ROW_MAGNITUDE_BUDGET


def test_rounding_added_in_quadrature_only_pays_below_a_threshold():
    """bounds/scale.scale_error: one more bounded increment c added to a martingale bound λS in
    quadrature, λ·sqrt(S² + c²), is below λS + c exactly when (λ² − 1)c ≤ 2λS (so at λ = 4.5 when
    c ≤ 0.47·S); at λ = 1 (the row scales) always."""
    lam, S, c = sp.symbols("lambda S c", positive=True)
    difference = (lam * S + c) ** 2 - lam**2 * (S**2 + c**2)
    assert _is_identity(difference, c * (2 * lam * S - (lam**2 - 1) * c))
    assert sp.simplify(difference.subs(lam, 1) - 2 * S * c) == 0
