"""Gaussian moments of activations and of LayerNorm outputs: closed forms and their integrals.

X ~ N(0, σ²), Φ the standard normal CDF, φ its density, GELU(x) = x·Φ(x) (the exact GELU).
Closed forms claimed (proofs/test_claim5_moments.py proves each):
    E[ReLU(X)] = σ/√(2π),  E[ReLU(X)²] = σ²/2,  Var ReLU(X) = σ²(π − 1)/(2π)
    E‖ReLU(X)‖² = dσ²/2 for X ~ N(0, σ²I_d)                       (Xiong et al. 2020, Lemma 1)
    E[GELU(X)] = σ²/√(2π(1 + σ²))
    E[Φ(X)²] = 1/4 + arcsin(σ²/(1 + σ²))/(2π)
    E[X Φ(X) φ(X)] = σ²/(2π(1 + σ²)√(1 + 2σ²))
    E[GELU(X)²] = σ²(E[Φ(X)²] + 2E[XΦ(X)φ(X)])                    (Stein's lemma, g = xΦ²)
LayerNorm (eps = 0) output n: Σn_i = 0 and Σn_i² = d for every x, so for exchangeable inputs
E[n_i²] = 1 and E[n_i n_j] = −1/(d − 1), i ≠ j (Kedia et al. 2024).

Symbolic expectations go through sympy.integrate; the numeric side is mpmath quadrature.
Never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable

import mpmath
import sympy as sp

X = sp.Symbol("x", real=True)
SIGMA = sp.Symbol("sigma", positive=True)


def gaussian_density(x=X, sigma=SIGMA) -> sp.Expr:
    return sp.exp(-x**2 / (2 * sigma**2)) / (sigma * sp.sqrt(2 * sp.pi))


def standard_cdf(x=X) -> sp.Expr:
    """Φ(x) = (1 + erf(x/√2))/2."""
    return (1 + sp.erf(x / sp.sqrt(2))) / 2


def standard_density(x=X) -> sp.Expr:
    return sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)


def gelu(x=X) -> sp.Expr:
    return x * standard_cdf(x)


def expectation(integrand: sp.Expr, lower=-sp.oo, x=X, sigma=SIGMA) -> sp.Expr:
    """E[f(X)] = ∫ f(x)·density(x) dx from `lower` (0 for ReLU: f vanishes below) to ∞."""
    return sp.integrate(integrand * gaussian_density(x, sigma), (x, lower, sp.oo))


# ---- closed forms ----------------------------------------------------------------------------
def relu_mean(sigma=SIGMA):
    return sigma / sp.sqrt(2 * sp.pi)


def relu_second_moment(sigma=SIGMA):
    return sigma**2 / 2


def relu_variance(sigma=SIGMA):
    return sigma**2 * (sp.pi - 1) / (2 * sp.pi)


def relu_squared_norm(d, sigma=SIGMA):
    """E‖ReLU(X)‖², X ~ N(0, σ²I_d): linearity over the d coordinates."""
    return d * sigma**2 / 2


def gelu_mean(sigma=SIGMA):
    return sigma**2 / sp.sqrt(2 * sp.pi * (1 + sigma**2))


def cdf_squared_mean(sigma=SIGMA):
    """E[Φ(X)²] = P(Z₁ ≤ X, Z₂ ≤ X): an orthant probability with correlation σ²/(1 + σ²)."""
    return sp.Rational(1, 4) + sp.asin(sigma**2 / (1 + sigma**2)) / (2 * sp.pi)


def x_cdf_density_mean(sigma=SIGMA):
    """E[X·Φ(X)·φ(X)]."""
    return sigma**2 / (2 * sp.pi * (1 + sigma**2) * sp.sqrt(1 + 2 * sigma**2))


def gelu_second_moment(sigma=SIGMA):
    return sigma**2 * (cdf_squared_mean(sigma) + 2 * x_cdf_density_mean(sigma))


def stein_remainder(g: sp.Expr, x=X, sigma=SIGMA) -> sp.Expr:
    """x·g·ρ − σ²·g'·ρ + σ²·(g·ρ)' with ρ the N(0, σ²) density: identically 0, which is
    Stein's lemma E[X g(X)] = σ² E[g'(X)] before integrating (g·ρ → 0 at ±∞)."""
    rho = gaussian_density(x, sigma)
    return x * g * rho - sigma**2 * sp.diff(g, x) * rho + sigma**2 * sp.diff(g * rho, x)


# ---- LayerNorm output moments ----------------------------------------------------------------
def exchangeable_moments(d, sum_of_squares, square_of_sum):
    """(E[n_i²], E[n_i n_j] for i ≠ j) of an exchangeable vector n whose Σn_i² and (Σn_i)² are the
    given constants: E[n_i²] = Σn²/d by exchangeability, and expanding
    (Σn)² = Σn_i² + Σ_{i≠j} n_i n_j gives (Σn)² = d·E[n_i²] + d(d − 1)·E[n_i n_j]."""
    second_moment = sum_of_squares / d
    cross = sp.Symbol("cross")
    (covariance,) = sp.solve(sp.Eq(d * second_moment + d * (d - 1) * cross, square_of_sum), cross)
    return second_moment, covariance


# ---- numeric: mpmath quadrature --------------------------------------------------------------
def mp_gaussian_expectation(f: Callable, sigma, dps: int) -> mpmath.mpf:
    """∫ f(x) ρ_σ(x) dx by tanh-sinh quadrature at `dps` digits, split at 0 (ReLU's kink)."""
    with mpmath.workdps(dps):
        sigma = mpmath.mpf(sigma)

        def weighted(x):
            return f(x) * mpmath.exp(-x**2 / (2 * sigma**2)) / (sigma * mpmath.sqrt(2 * mpmath.pi))

        return mpmath.quad(weighted, [-mpmath.inf, 0, mpmath.inf])


def mp_standard_cdf(x):
    return mpmath.ncdf(x)


def mp_gelu(x):
    return x * mpmath.ncdf(x)
