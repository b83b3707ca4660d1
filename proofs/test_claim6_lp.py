"""Claim 6: the Lp normalizer y = x/N, N = ((1/d)Σ|x_i|^p + eps^(p/2))^(1/p); p = ∞: x/max(‖x‖∞, √eps).

Source: this project's definition (registry.py; docs/theory.md §Lp normalizers: no published
stability theory was found). Closed forms: normtheory/symbolic/lp.py. The claims:
1. p = 2 is RMSNorm (both eps placements), and the floor of N is √eps for every p (general d, p).
2. eps = 0: y(cx) = y(x) for c > 0 (general d, p); eps > 0 breaks it.
3. ‖y‖_p^p = d·S/(S + eps^(p/2)), S = (1/d)Σ|x|^p, so ‖y‖_p ≤ d^(1/p) with equality at eps = 0
   (general d, p). ‖y‖₂ lies between √d and d^(1/p) at eps = 0 — the power-mean inequality
   (‖v‖₂ ≥ ‖v‖_p for p ≥ 2, ‖v‖₂ ≤ d^(1/2−1/p)‖v‖_p, reversed for p ≤ 2) — with both ends
   attained (constant row: √d; one-hot row: d^(1/p); symbolic, general d); eps > 0 multiplies
   every norm of y by f = (S/(S + eps^(p/2)))^(1/p) ≤ 1.
4. Jacobian J = (I − uvᵀ)/N, u = ŷ, v_j = sign(x_j)|ŷ_j|^(p−1)/d (general-d proof in claim 3),
   uᵀv = S/(S + eps^(p/2)) (general d); ‖J‖₂ = sqrt((T + sqrt(T² − 4D²))/2)/N with
   T = 2 − 2uᵀv + ‖u‖²‖v‖², D = 1 − uᵀv. Proof: MᵀM (M = I − uvᵀ) is I plus a matrix of rank ≤ 2
   with range in span{u, v}, so d − 2 eigenvalues are 1 and the other two have sum T and product
   D² (= trace and det of the restriction); the characteristic polynomial is checked symbolically
   for d = 2, 3 and at exact rational u, v for d = 4..6. The quadratic at λ = 1 equals
   (uᵀv)² − ‖u‖²‖v‖² ≤ 0, so the largest root is ≥ 1 and no eigenvalue 1 exceeds it. At eps = 0:
   N‖J‖₂ = ‖u‖₂‖v‖₂ ∈ [1, d^|1/2−1/p|]: ≥ 1 by
   Cauchy–Schwarz (uᵀv = 1); for p ≥ 2 Hölder gives ‖u‖₂ ≤ d^(1/2−1/p)·d^(1/p) = √d and
   Σ|u|^(2p−2) ≤ ‖u‖∞^(p−2)Σ|u|^p ≤ d^((p−2)/p)·d, so ‖u‖₂‖v‖₂ ≤ √d·d^((p−1)/p)/d = d^(1/2−1/p);
   for p < 2 the substitution w = |u|^(p−1) swaps p with its conjugate q = p/(p−1) > 2.
5. p → ∞: M^p/d ≤ N_p^p ≤ 2M^p with M = max(‖x‖∞, √eps) (drop all terms but the largest /
   bound each by M^p), so d^(−1/p) ≤ N_p/M ≤ 2^(1/p) → 1: y → x/M. sympy.limit confirms it on
   concrete rows, and the naive eps placement's limit x/max(‖x‖∞, 1) is told apart.
Numeric: values at 110 digits through lambdify and normtheory.reference (forward, Jacobians
from its VJP, p up to 2^14 and p = ∞).
"""

import functools
import itertools

import mpmath
import numpy as np
import pytest
import sympy as sp

from normtheory.symbolic import lp
from normtheory.symbolic import normalizers as norms
from normtheory.symbolic.identities import decide
from normtheory.symbolic.powersums import SumAlgebra
from normtheory.symbolic.spotcheck import (
    AGREEMENT,
    SPOT_DIGITS,
    agrees,
    evaluate_at,
    mp_function,
    reference,
    reference_jacobian,
    sample_rows,
    spectral_norm,
)

EPS = sp.Symbol("epsilon", nonnegative=True)
POSITIVE_EPS = sp.Symbol("epsilon", positive=True)
P = sp.Symbol("p", positive=True)
C = sp.Symbol("c", positive=True)
MODES = ("inside", "outside")
WITNESS = [1, 2, 4, -3]


def witness_points(alg, extra=None):
    return [{**alg.instance({"x": WITNESS}, i=i), EPS: sp.Rational(1, 10), P: 3, **(extra or {})} for i in range(2)]


# ---- 1. p = 2 is RMSNorm; the floor is √eps --------------------------------------------------
@pytest.mark.parametrize("eps_mode", MODES)
def test_p2_is_rmsnorm_for_general_d(eps_mode):
    alg = SumAlgebra()
    verdict = decide(norms.lpnorm_entry(alg, EPS, 2, eps_mode), norms.rmsnorm_entry(alg, EPS, eps_mode),
                     witness_points(alg))
    assert verdict.proven, verdict


def test_p2_with_a_wrong_eps_power_is_not_rmsnorm():
    alg = SumAlgebra()
    wrong = norms.lpnorm_entry(alg, EPS, 2, "inside", eps_power=2)  # eps^p instead of eps^(p/2)
    verdict = decide(wrong, norms.rmsnorm_entry(alg, EPS), witness_points(alg))
    assert verdict.refuted, verdict


def test_floor_is_sqrt_eps_for_every_p_and_not_for_the_naive_placement():
    zero_row = [0, 0, 0]
    floor = lp.normalizer(zero_row, P, POSITIVE_EPS)
    assert decide(floor, sp.sqrt(POSITIVE_EPS), []).proven
    naive = lp.normalizer(zero_row, P, POSITIVE_EPS, eps_power=1)
    at = {P: 8, POSITIVE_EPS: sp.Rational(1, 10**6)}
    verdict = decide(naive, sp.sqrt(POSITIVE_EPS), [at])
    assert verdict.refuted, verdict
    # docs/theory.md §Lp eps placement: the naive floor at p = 8, eps = 1e-6 is eps^(1/8) = 10^(−3/4) ≈ 0.18
    assert abs(naive.subs(at).evalf(30) - sp.Integer(10) ** sp.Rational(-3, 4)) < 1e-25


# ---- 2. scale invariance ---------------------------------------------------------------------
def scaled_entry(alg, eps):
    """Entry i of the Lp normalizer applied to c·x."""
    cx = C * alg.i["x"]
    return cx / (alg.mean(sp.Abs(cx) ** P) + eps ** (P / 2)) ** (1 / P)


def test_scale_invariance_at_eps_zero_for_general_d():
    alg = SumAlgebra()
    verdict = decide(scaled_entry(alg, 0), norms.lpnorm_entry(alg, 0, P), witness_points(alg, {C: 2}))
    assert verdict.proven, verdict


def test_scale_invariance_fails_with_eps():
    alg = SumAlgebra()
    verdict = decide(scaled_entry(alg, EPS), norms.lpnorm_entry(alg, EPS, P), witness_points(alg, {C: 2}))
    assert verdict.refuted, verdict


# ---- 3. norms of the output ------------------------------------------------------------------
def p_th_power_of_p_norm(alg, eps):
    """(Σ_i |y_i|^p, S) over the sum symbols."""
    y = norms.lpnorm_entry(alg, eps, P)
    return alg.total(sp.Abs(y) ** P), alg.mean(sp.Abs(alg.i["x"]) ** P)


def test_p_norm_of_the_output_for_general_d():
    alg = SumAlgebra()
    total, S = p_th_power_of_p_norm(alg, EPS)
    point = [{alg.d: 3, alg.sum_symbol(sp.Abs(alg.i["x"]) ** P): 5, EPS: sp.Rational(1, 10), P: 3}]
    verdict = decide(total, alg.d * S / (S + EPS ** (P / 2)), point)
    assert verdict.proven, verdict
    at_zero, _ = p_th_power_of_p_norm(SumAlgebra(), 0)
    assert decide(at_zero, SumAlgebra().d, []).proven  # ‖y‖_p = d^(1/p) at eps = 0
    wrong = decide(total, alg.d, point)  # the eps = 0 value does not hold for eps > 0
    assert wrong.refuted, wrong


def test_two_norm_bounds_are_attained_for_general_d():
    """Constant row: y = ±1, ‖y‖₂ = √d. One-hot row x = a·e_1: y_1 = d^(1/p), ‖y‖₂ = d^(1/p)."""
    d, a = sp.Symbol("d", positive=True, integer=True), sp.Symbol("a", positive=True)
    constant_y = a / ((d * a**P) / d) ** (1 / P)
    assert decide(sp.sqrt(d * constant_y**2), sp.sqrt(d), []).proven
    one_hot_y = a / (a**P / d) ** (1 / P)
    assert decide(one_hot_y, d ** (1 / P), []).proven
    assert decide(one_hot_y, sp.sqrt(d), [{d: 4, a: 1, P: 3}]).refuted  # only at p = 2


def two_norm_check(row, p, eps, bounds=lp.output_norm_bounds):
    """Whether ‖y‖₂ of the reference output lies in f·[lower, upper] (f = shrink factor of eps)."""
    d = len(row)
    y = reference("lpnorm", row, eps=eps, p=float(p), affine="none")["y"]
    with mpmath.workdps(SPOT_DIGITS):
        norm2 = mpmath.sqrt(mpmath.fsum(v**2 for v in y))
        x = [mpmath.mpf(float(v)) for v in row]
        p_mp = mpmath.mpf(sp.Rational(p).p) / sp.Rational(p).q
        S = mpmath.fsum(abs(v) ** p_mp for v in x) / d
        f = (S / (S + mpmath.mpf(eps) ** (p_mp / 2))) ** (1 / p_mp)
        lower, upper = (mpmath.mpf(sp.N(e, SPOT_DIGITS)) for e in bounds(d, sp.nsimplify(p))["2"])
        slack = 1 + AGREEMENT  # the reference's values carry ~126 digits; equality cases sit at the ends
        return f * lower <= norm2 * slack and norm2 <= f * upper * slack


def bound_rows(d):
    return sample_rows(d, count=3, seed=d) + [np.eye(d)[0] * 3.0, np.full(d, -0.75)]


@pytest.mark.parametrize("p", [1, sp.Rational(3, 2), 3, 8])
def test_two_norm_bounds_hold_on_reference_outputs(p):
    for d, eps in itertools.product((2, 3, 5, 8), (0.0, 1e-6, 0.5)):
        for row in bound_rows(d):
            assert two_norm_check(row, p, eps), (d, eps, row)


def test_a_wrong_two_norm_bound_is_violated():
    """"‖y‖₂ ≤ √d for every p" (true for p ≥ 2) fails for p < 2 on the one-hot row."""
    def wrong_bounds(d, p):
        return {"2": (sp.Integer(0), sp.sqrt(d))}
    assert not two_norm_check(np.eye(5)[0], sp.Rational(3, 2), 0.0, wrong_bounds)


# ---- 4. Jacobian and its spectral norm -------------------------------------------------------
def test_closed_form_jacobian_is_the_derivative_of_the_definition():
    """d = 3, general p, one mixed sign pattern (claim 3 proves every pattern for general d)."""
    a = sp.symbols("a_1:4", positive=True)
    xs = [a[0], -a[1], a[2]]
    derivative = sp.Matrix(lp.forward(xs, P, EPS)).jacobian(a) * sp.diag(1, -1, 1)  # chain rule x_2 = −a_2
    assert decide(lp.jacobian(xs, P, EPS), derivative, []).proven
    u, v, N = lp.rank_one_parts(xs, P, EPS)
    wrong_v = sp.Matrix([vi * sp.Abs(x / N) for vi, x in zip(v, xs)])  # exponent p instead of p − 1
    wrong = (sp.eye(3) - u * wrong_v.T) / N
    point = [{a[0]: 1, a[1]: 2, a[2]: 5, P: 3, EPS: sp.Rational(1, 10)}]
    assert decide(wrong, derivative, point).refuted


def test_u_dot_v_for_general_d():
    # u_i v_i = (x_i/N)·sign(x_i)|x_i/N|^(p−1)/d = |x_i/N|^p/d depends on |x_i| only, so the
    # coordinate may be taken positive: an algebra whose generic coordinate is a magnitude
    alg = SumAlgebra()
    a_i = alg.i["x"] = sp.Symbol("a_i", positive=True)
    N = (alg.mean(a_i**P) + EPS ** (P / 2)) ** (1 / P)
    u_dot_v = alg.total((a_i / N) * (a_i / N) ** (P - 1) / alg.d)
    S = alg.mean(a_i**P)
    point = [{alg.d: 3, alg.sum_symbol(a_i**P): 5, EPS: sp.Rational(1, 10), P: 3}]
    assert decide(u_dot_v, S / (S + EPS ** (P / 2)), point).proven
    assert decide(u_dot_v.subs(EPS, 0), 1, []).proven
    assert decide(u_dot_v, 1, point).refuted  # only at eps = 0


def characteristic_polynomials(u, v, lam):
    d = u.rows
    M = sp.eye(d) - u * v.T
    characteristic = (lam * sp.eye(d) - M.T * M).det(method="berkowitz")
    quadratic = lp.singular_value_quadratic((u.T * v)[0], (u.T * u)[0], (v.T * v)[0], lam)
    return characteristic, quadratic


@pytest.mark.parametrize("d", [4, 5, 6])
def test_singular_values_of_identity_minus_rank_one_at_exact_points(d):
    """The same polynomial identity in λ for exact rational u, v (symbolic u, v at d = 4 take 20 s)."""
    lam = sp.Symbol("lambda")
    rng = np.random.default_rng(d)
    for _ in range(2):
        u, v = (sp.Matrix([sp.Rational(int(n), int(k)) for n, k in zip(rng.integers(-9, 10, d), rng.integers(1, 7, d))])
                for _ in range(2))
        characteristic, quadratic = characteristic_polynomials(u, v, lam)
        assert decide(characteristic, (lam - 1) ** (d - 2) * quadratic, []).proven


@pytest.mark.parametrize("d", [2, 3])
def test_singular_values_of_identity_minus_rank_one(d):
    """det(λI − MᵀM) = (λ − 1)^(d−2)·(λ² − Tλ + D²) for M = I − uvᵀ, symbolic u, v."""
    u = sp.Matrix(sp.symbols(f"u_1:{d + 1}", real=True))
    v = sp.Matrix(sp.symbols(f"v_1:{d + 1}", real=True))
    lam = sp.Symbol("lambda")
    characteristic, quadratic = characteristic_polynomials(u, v, lam)
    assert decide(characteristic, (lam - 1) ** (d - 2) * quadratic, []).proven
    wrong = quadratic + lam * (u.T * u)[0] * (v.T * v)[0]  # T without its ‖u‖²‖v‖² term
    points = [{**dict(zip(u, range(1, d + 1))), **dict(zip(v, range(2, d + 2))), lam: 3}]
    assert decide(characteristic, (lam - 1) ** (d - 2) * wrong, points).refuted


def test_the_quadratic_at_one_is_minus_the_cauchy_schwarz_gap():
    c, uu, vv = sp.symbols("c uu vv", real=True)
    assert decide(lp.singular_value_quadratic(c, uu, vv, 1), c**2 - uu * vv, []).proven
    assert decide(lp.singular_value_quadratic(c, uu, vv, 1), uu * vv - c**2, [{c: 1, uu: 2, vv: 3}]).refuted


def jacobian_norm_rows(d):
    return sample_rows(d, count=2, seed=20 + d)


@pytest.mark.parametrize("p", [sp.Rational(3, 2), 3, 8])
def test_jacobian_norm_closed_form_against_reference(p):
    for d in (3, 5):
        xs = norms.vector_symbols("x", d)
        closed = mp_function(xs + [EPS], lp.jacobian_spectral_norm(xs, p, EPS))
        closed_eps0 = mp_function(xs, lp.jacobian_spectral_norm_eps0(xs, p))
        for row, eps in itertools.product(jacobian_norm_rows(d), (0.0, 1e-6, 0.25)):
            measured = spectral_norm(reference_jacobian("lpnorm", row, eps=eps, p=float(p), affine="none"))
            assert agrees(evaluate_at(closed, *row, eps), [measured]), (d, row, eps)
            if eps == 0:
                assert agrees(evaluate_at(closed_eps0, *row), [measured])


def test_rmsnorm_jacobian_norm_formula_is_wrong_for_p3():
    """N‖J‖₂ = 1 holds at p = 2 (J/N a projection) but not at p = 3: the same comparison fails."""
    d, p = 4, 3
    row = jacobian_norm_rows(d)[0]
    measured = spectral_norm(reference_jacobian("lpnorm", row, eps=0.0, p=float(p), affine="none"))
    xs = norms.vector_symbols("x", d)
    one_over_N = mp_function(xs, 1 / lp.normalizer(xs, p, 0))
    assert not agrees(evaluate_at(one_over_N, *row), [measured])
    at_p2 = spectral_norm(reference_jacobian("lpnorm", row, eps=0.0, p=2.0, affine="none"))
    assert agrees(evaluate_at(mp_function(xs, 1 / lp.normalizer(xs, 2, 0)), *row), [at_p2])


def test_holder_exponents():
    """½ + (p − 1)/p − 1 = ½ − 1/p, and the conjugate q = p/(p − 1) has ½ − 1/q = −(½ − 1/p)."""
    q = P / (P - 1)
    assert decide(sp.Rational(1, 2) + (P - 1) / P - 1, sp.Rational(1, 2) - 1 / P, []).proven
    assert decide(sp.Rational(1, 2) - 1 / q, -(sp.Rational(1, 2) - 1 / P), []).proven
    assert decide(sp.Rational(1, 2) - 1 / q, sp.Rational(1, 2) - 1 / P, [{P: 3}]).refuted


@functools.cache
def scaled_jacobian_norm_function(d, p):
    """N·‖J‖₂ at eps = 0 as an mpmath function of the row."""
    xs = norms.vector_symbols("x", d)
    return mp_function(xs, lp.jacobian_spectral_norm_eps0(xs, p) * lp.normalizer(xs, p, 0))


def scaled_norm_within_bounds(row, p, bounds):
    d = len(row)
    value = evaluate_at(scaled_jacobian_norm_function(d, p), *row)[0]
    with mpmath.workdps(SPOT_DIGITS):
        lower, upper = (mpmath.mpf(sp.N(b, SPOT_DIGITS)) for b in bounds(d, p))
        return lower * (1 - AGREEMENT) <= value <= upper * (1 + AGREEMENT), value


@pytest.mark.parametrize("p", [sp.Rational(3, 2), 3, 8, 30])
def test_scaled_jacobian_norm_bounds(p):
    rng = np.random.default_rng(7)
    for d in (2, 4, 8):
        rows = [np.abs(rng.standard_normal(d)) ** rng.uniform(0.2, 4) for _ in range(15)]
        rows += [np.full(d, 2.5), np.concatenate([[1.0], np.full(d - 1, 0.5)])]
        for row in rows:
            inside, value = scaled_norm_within_bounds(row, p, lp.scaled_jacobian_norm_bounds)
            assert inside, (d, row, value)
        # the lower end is attained on a constant row
        assert agrees([scaled_norm_within_bounds(np.full(d, 2.5), p, lp.scaled_jacobian_norm_bounds)[1]], [1])


def test_a_wrong_jacobian_norm_bound_is_violated():
    """"N‖J‖₂ ≤ 1" (the p = 2 value) fails at p = 8."""
    inside, _ = scaled_norm_within_bounds(np.array([1.0, 0.5, 0.5, 0.5]), 8, lambda d, p: (1, 1))
    assert not inside


# ---- 5. p → ∞ --------------------------------------------------------------------------------
def test_squeeze_factors_tend_to_one():
    d = sp.Symbol("d", positive=True, integer=True)
    lower, upper = lp.squeeze_factors(d, P)
    assert sp.limit(lower, P, sp.oo) == 1 and sp.limit(upper, P, sp.oo) == 1


LIMIT_ROWS = [  # (row, eps): the max dominates, √eps dominates, equal magnitudes
    ([3, -5, 1], sp.Rational(1, 4)),
    ([sp.Rational(1, 4), sp.Rational(-1, 3)], sp.Rational(1, 100)),
    ([sp.Rational(1, 4), sp.Rational(1, 3)], 1),
    ([2, -2, 2, 1], sp.Rational(1, 9)),
]


def limit_of_normalizer(row, eps, eps_power=None):
    return sp.limit(lp.normalizer(row, P, eps, eps_power), P, sp.oo)


@pytest.mark.parametrize(("row", "eps"), LIMIT_ROWS)
def test_sympy_limit_of_the_normalizer(row, eps):
    assert decide(limit_of_normalizer(row, eps), lp.max_normalizer(row, eps), []).proven


def test_naive_placement_has_a_different_limit():
    row, eps = LIMIT_ROWS[1]
    naive_limit = limit_of_normalizer(row, eps, eps_power=1)
    assert decide(naive_limit, lp.max_normalizer(row, eps, naive=True), []).proven  # max(‖x‖∞, 1) = 1
    assert decide(naive_limit, lp.max_normalizer(row, eps), [{}]).refuted


def large_p_within_squeeze(row, eps, p, limit_y):
    """|y_p − y_∞| ≤ |y_∞|·max(d^(1/p) − 1, 1 − 2^(−1/p)) for every entry (the squeeze, inverted)."""
    d = len(row)
    y_p = reference("lpnorm", row, eps=eps, p=float(p), affine="none")["y"]
    with mpmath.workdps(SPOT_DIGITS):
        tolerance = max(mpmath.mpf(d) ** (mpmath.mpf(1) / p) - 1, 1 - mpmath.mpf(2) ** (-mpmath.mpf(1) / p))
        return all(abs(a - b) <= abs(b) * tolerance * (1 + AGREEMENT) for a, b in zip(y_p, limit_y))


@pytest.mark.parametrize("p", [64, 1024, 2**14])
def test_reference_at_large_p_is_within_the_squeeze_of_the_max_normalizer(p):
    rows = [(np.array([3.0, -5.0, 1.0, 0.5]), 0.25), (np.array([0.25, -1 / 3, 0.125]), 0.01),
            (np.array([0.001, -0.002, 0.0005]), 1e-6)]
    for row, eps in rows:
        limit_y = reference("lpnorm", row, eps=eps, p=float("inf"), affine="none")["y"]
        with mpmath.workdps(SPOT_DIGITS):
            floor = max(max(abs(mpmath.mpf(float(v))) for v in row), mpmath.sqrt(mpmath.mpf(eps)))
            assert agrees(limit_y, [mpmath.mpf(float(v)) / floor for v in row])  # the p = ∞ definition
        assert large_p_within_squeeze(row, eps, p, limit_y), (row, eps)


def test_limit_without_the_floor_is_outside_the_squeeze():
    """x/‖x‖∞ (no √eps floor) is not the limit when every |x_i| < √eps."""
    row, eps = np.array([0.25, -1 / 3, 0.125]), 0.25
    without_floor = [mpmath.mpf(float(v)) / mpmath.mpf(1 / 3) for v in row]
    assert not large_p_within_squeeze(row, eps, 2**14, without_floor)


def test_jacobian_at_p_infinity():
    """The reference's p = ∞ Jacobian is (I − ŷ sign(x_k)e_kᵀ)/M with norm ‖ŷ‖₂/M, and the finite-p
    closed-form norms approach it as p grows."""
    row = np.array([0.5, -2.0, 1.25, 0.75])
    d = row.size
    measured = reference_jacobian("lpnorm", row, eps=1e-6, p=float("inf"), affine="none")
    with mpmath.workdps(SPOT_DIGITS):
        ours = lp.mp_max_norm_jacobian(row, 1e-6)
        assert agrees(list(ours), list(measured))
        top = mpmath.mpf(2)
        expected_norm = mpmath.sqrt(mpmath.fsum((mpmath.mpf(v) / top) ** 2 for v in row)) / top
    assert agrees([spectral_norm(measured)], [expected_norm])
    xs = norms.vector_symbols("x", d)
    gaps = []
    for p in (16, 256, 4096):
        finite = evaluate_at(mp_function(xs + [EPS], lp.jacobian_spectral_norm(xs, p, EPS)), *row, 1e-6)[0]
        gaps.append(abs(finite - expected_norm))
    assert gaps[0] > gaps[1] > gaps[2]  # convergence only; no rate is claimed for the norm
    # the same comparison rejects a p = ∞ Jacobian that forgets the rank-one term
    with mpmath.workdps(SPOT_DIGITS):
        assert not agrees(list(mpmath.eye(d) / top), list(measured))
