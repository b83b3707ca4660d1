"""Algebra behind normtheory/precision/bounds/lp.py (stable_backward_bound) (steps L3–L5), in sympy, with the
bound of L4 checked at every corner of its error box in mpmath."""

import itertools
import random

import mpmath
import sympy as sp


def test_power_of_the_normalized_value_is_monotone():
    """L3: for p ≥ 1, v ↦ v^(p−1) is nondecreasing on v > 0 (derivative (p − 1)v^(p−2) ≥ 0), so an
    interval [lo, hi] of |ŷ| maps to [lo^(p−1), hi^(p−1)]; for p < 1 it would not (refuted)."""
    v, p = sp.symbols("v p", positive=True)
    derivative = sp.diff(v ** (p - 1), v)
    assert sp.simplify(derivative - (p - 1) * v ** (p - 2)) == 0
    assert derivative.subs({p: sp.Rational(5, 2), v: sp.Rational(1, 3)}) > 0
    assert derivative.subs({p: sp.Rational(1, 2), v: sp.Rational(1, 3)}) < 0


def test_division_steps_decomposition():
    """L5: t̂/(R(1 + ε)K)(1 + δ₁)(1 + δ₂) − T/(RK) = ((t̂ − T)(1 + θ) + Tθ)/(RK) with
    1 + θ = (1 + δ₁)(1 + δ₂)/(1 + ε), and |θ| ≤ (1 + ρ)(1 + u)² − 1 when |1/(1 + ε) − 1| ≤ ρ."""
    t_hat, T, R, K, eps_, d1, d2 = sp.symbols("that T R K epsilon delta1 delta2")
    theta = (1 + d1) * (1 + d2) / (1 + eps_) - 1
    lhs = t_hat / (R * (1 + eps_) * K) * (1 + d1) * (1 + d2) - T / (R * K)
    assert sp.simplify(lhs - ((t_hat - T) * (1 + theta) + T * theta) / (R * K)) == 0
    assert sp.simplify(lhs - (t_hat - T) / (R * K) - T * theta / (R * K)) != 0


def _t_hat(g, e_g, phi, e_phi, K, e_K, d1, d2, fma):
    product = (phi + e_phi) * (K + e_K)
    if fma:
        return ((g + e_g) - product) * (1 + d1)
    return ((g + e_g) - product * (1 + d2)) * (1 + d1)


def _e_t(g, phi, K, E_g, E_phi, E_K, u, fma):
    product = (abs(phi) + E_phi) * (abs(K) + E_K)
    u_product = 0 if fma else u
    return (E_g + abs(phi) * E_K + E_phi * abs(K) + E_phi * E_K + u * (abs(g) + E_g + product * (1 + u_product))
            + u_product * product)


def test_t_error_bound_holds_at_every_corner():
    """L4: t̂ is affine in each of e_g, e_φ, e_K, δ₁, δ₂ separately, so |t̂ − T| is largest at a
    corner of the box; every corner stays within E_T (with and without FMA), and a bound without
    the product's rounding term u(|φ| + E_φ)(|K| + E_K) fails. (Without FMA the outer rounding
    also multiplies the rounded product: the u·u' term, which an earlier form missed.)"""
    rng = random.Random(7)
    with mpmath.workprec(200):
        u = mpmath.mpf(2) ** -24
        for fma in (True, False):
            worst, worst_short = 0, 0
            for _ in range(40):
                g, phi, K = (mpmath.mpf(rng.uniform(-3, 3)) for _ in range(3))
                E_g, E_phi, E_K = (mpmath.mpf(10) ** rng.uniform(-7, -1) for _ in range(3))
                exact = g - phi * K
                bound = _e_t(g, phi, K, E_g, E_phi, E_K, u, fma)
                short = bound - u * (abs(phi) + E_phi) * (abs(K) + E_K)
                for c in itertools.product((-1, 1), repeat=5):
                    value = _t_hat(g, c[0] * E_g, phi, c[1] * E_phi, K, c[2] * E_K, c[3] * u, c[4] * u, fma)
                    worst = max(worst, abs(value - exact) / bound)
                    worst_short = max(worst_short, abs(value - exact) / short)
            assert worst <= 1 + mpmath.mpf(2) ** -150  # attained at a corner (up to 200-bit noise)
            assert worst_short > 1
