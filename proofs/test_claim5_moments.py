"""Claim 5: Gaussian moments of ReLU and GELU, and the moments of LayerNorm outputs.

Sources: Xiong et al. 2020 (arXiv 2002.04745) Lemma 1: X ~ N(0, σ²I_d) ⇒ E‖ReLU(X)‖² = σ²d/2.
Kedia et al. 2024 (DeepScaleLM): ReLU mean σ/√(2π), variance σ²(π − 1)/(2π); LayerNorm output
variance 1 and cross-dimension covariance −1/(d − 1). GELU (exact, xΦ(x)): closed forms derived
here (normtheory/symbolic/moments.py).

How each is proved:
- ReLU moments, E[GELU(X)], E[XΦ(X)φ(X)]: sympy.integrate of the Gaussian integral equals the
  closed form (σ > 0 symbolic). Lemma 1 for general d: linearity of expectation over the d
  coordinates, each N(0, σ²) (independence is not needed).
- E[GELU(X)²]: sympy does not integrate x²Φ(x)²ρ(x) (it runs for minutes), so the proof has
  two symbolic steps. Stein's lemma E[Xg(X)] = σ²E[g'(X)] with g = xΦ², checked as the pointwise
  identity x g ρ = σ² g' ρ − σ² (g ρ)' plus g ρ → 0 at ±∞ (sympy.limit); this gives
  E[GELU²] = σ²(E[Φ(X)²] + 2E[XΦφ]). Then F(σ) = E[Φ(σZ)²] = 1/4 + arcsin(σ²/(1 + σ²))/(2π):
  F(0) = Φ(0)² = 1/4, and F'(σ) = E[2Φ(σZ)φ(σZ)Z] (differentiation under the integral, the
  σ-derivative being dominated by |z|φ(z)) is integrated by sympy and equals the derivative of
  the closed form.
- LayerNorm (eps = 0): Σn_i = 0 and Σn_i² = d for every x (general d, powersums.py); for an
  exchangeable input (i.i.d. coordinates, e.g. N(μ, σ²) each) n is exchangeable, so
  E[n_i²] = d/d = 1 and 0 = E[(Σn)²] = d·1 + d(d − 1)·E[n_i n_j] gives −1/(d − 1).
Numeric cross-check: mpmath tanh-sinh quadrature at two precisions (30 and 45 digits); the
tolerance is ten times the difference between the two quadratures (plus 10⁻³⁵), i.e. the
quadrature's own observed error, and each wrong variant fails that same comparison. LayerNorm's
moments are integrated for a Gaussian input at d = 3: n = √d·(a uniform unit vector in 1^⊥), an
integral over a circle (d = 4 is a 2-sphere integral: 15–50 s in mpmath, left out). For d = 3..8
the exchangeable input "a fixed row in uniformly random order" gives exact expectations
(averages over coordinates and ordered pairs), evaluated on normtheory.reference's LN at 110
digits. Lemma 1 is not integrated in two dimensions (tanh-sinh over four quadrants: > 20 s);
its numeric evidence is the one-dimensional second moment, by linearity.
"""

import mpmath
import pytest
import sympy as sp

from normtheory.symbolic import moments as mom
from normtheory.symbolic import normalizers as norms
from normtheory.symbolic.identities import decide
from normtheory.symbolic.powersums import SumAlgebra
from normtheory.symbolic.spotcheck import SPOT_DIGITS, agrees, reference, sample_rows

X, SIGMA = mom.X, mom.SIGMA
SIGMAS = (sp.Rational(1, 2), 1, 3)
LOW_DPS, HIGH_DPS = 30, 45
QUADRATURE_FLOOR = mpmath.mpf(10) ** -(HIGH_DPS - 10)


def quadrature_agrees(integrate, claimed) -> bool:
    """|Q_high − claimed| ≤ 10·|Q_high − Q_low| + 10^−(HIGH_DPS − 10), Q at 30 and 45 digits."""
    low, high = integrate(LOW_DPS), integrate(HIGH_DPS)
    with mpmath.workdps(HIGH_DPS):
        claimed = mpmath.mpf(sp.N(claimed, HIGH_DPS + 10)) if isinstance(claimed, sp.Basic) else mpmath.mpf(claimed)
        return abs(high - claimed) <= 10 * abs(high - low) + QUADRATURE_FLOOR


def gaussian_quadrature(f, sigma):
    return lambda dps: mom.mp_gaussian_expectation(f, sigma, dps)


def at(expr, sigma):
    return expr.subs(SIGMA, sigma)


# ---- ReLU ------------------------------------------------------------------------------------
def relu_integrals():
    return {"mean": mom.expectation(X, lower=0), "second": mom.expectation(X**2, lower=0)}


def test_relu_moments_by_symbolic_integration():
    integrals = relu_integrals()
    assert decide(integrals["mean"], mom.relu_mean(), []).proven
    assert decide(integrals["second"], mom.relu_second_moment(), []).proven
    assert decide(integrals["second"] - integrals["mean"] ** 2, mom.relu_variance(), []).proven
    # wrong variants: the variance without the squared mean, a mean without the √2
    assert decide(integrals["second"], mom.relu_variance(), [{SIGMA: 1}]).refuted
    assert decide(integrals["mean"], SIGMA / sp.sqrt(sp.pi), [{SIGMA: 1}]).refuted


def test_xiong_lemma1_for_general_d():
    """E‖ReLU(X)‖² = Σ_i E[ReLU(X_i)²] by linearity; each X_i ~ N(0, σ²)."""
    d, i = sp.Symbol("d", positive=True, integer=True), sp.Symbol("i", positive=True, integer=True)
    per_coordinate = relu_integrals()["second"]
    total = sp.Sum(per_coordinate, (i, 1, d)).doit()
    assert decide(total, mom.relu_squared_norm(d), []).proven
    assert decide(total, d * SIGMA**2, [{d: 3, SIGMA: 1}]).refuted  # the full second moment


@pytest.mark.parametrize("sigma", SIGMAS)
def test_relu_moments_by_quadrature(sigma):
    relu = lambda x: max(x, 0)  # noqa: E731
    assert quadrature_agrees(gaussian_quadrature(relu, sigma), at(mom.relu_mean(), sigma))
    assert quadrature_agrees(gaussian_quadrature(lambda x: relu(x) ** 2, sigma), at(mom.relu_second_moment(), sigma))
    assert not quadrature_agrees(gaussian_quadrature(lambda x: relu(x) ** 2, sigma), at(mom.relu_variance(), sigma))


# ---- GELU ------------------------------------------------------------------------------------
def test_gelu_mean_by_symbolic_integration():
    integral = mom.expectation(mom.gelu())
    assert decide(integral, mom.gelu_mean(), []).proven
    assert decide(integral, SIGMA**2 / sp.sqrt(2 * sp.pi), [{SIGMA: 1}]).refuted  # no √(1 + σ²)


def test_x_cdf_density_mean_by_symbolic_integration():
    integral = mom.expectation(X * mom.standard_cdf() * mom.standard_density())
    assert decide(integral, mom.x_cdf_density_mean(), []).proven


def test_stein_lemma_for_gelu_squared():
    g = X * mom.standard_cdf() ** 2
    assert decide(mom.stein_remainder(g), 0, []).proven
    boundary = g * mom.gaussian_density()
    assert sp.limit(boundary, X, sp.oo) == 0 and sp.limit(boundary, X, -sp.oo) == 0
    # the same identity with g' missing its 2xΦφ term does not hold
    rho = mom.gaussian_density()
    wrong = X * g * rho - SIGMA**2 * mom.standard_cdf() ** 2 * rho + SIGMA**2 * sp.diff(g * rho, X)
    assert decide(wrong, 0, [{X: 1, SIGMA: 1}]).refuted


def cdf_squared_derivative_integral():
    """F'(σ) = E[2Φ(σZ)φ(σZ)Z], Z standard normal."""
    z = sp.Symbol("z", real=True)
    integrand = 2 * mom.standard_cdf(SIGMA * z) * mom.standard_density(SIGMA * z) * z * mom.standard_density(z)
    return sp.integrate(integrand, (z, -sp.oo, sp.oo))


def test_cdf_squared_mean_by_its_derivative():
    closed = mom.cdf_squared_mean()
    assert closed.subs(SIGMA, 0) == mom.standard_cdf(0) ** 2  # F(0) = Φ(0)² = 1/4
    derivative = cdf_squared_derivative_integral()
    # the two sides carry nested radicals that sympy does not bring to one form; both are positive
    # for σ > 0 (sympy's assumptions decide it once factor() has rewritten the claimed derivative
    # exactly), so comparing their squares is a proof
    claimed = sp.factor(sp.diff(closed, SIGMA))
    assert derivative.is_positive and claimed.is_positive
    assert decide(derivative**2, claimed**2, []).proven
    wrong = sp.Rational(1, 4) + sp.asin(SIGMA / (1 + SIGMA)) / (2 * sp.pi)  # σ for σ²: also 1/4 at 0
    assert decide(derivative**2, sp.diff(wrong, SIGMA) ** 2, [{SIGMA: 2}]).refuted


@pytest.mark.parametrize("sigma", SIGMAS)
def test_gelu_moments_by_quadrature(sigma):
    assert quadrature_agrees(gaussian_quadrature(mom.mp_gelu, sigma), at(mom.gelu_mean(), sigma))
    second = gaussian_quadrature(lambda x: mom.mp_gelu(x) ** 2, sigma)
    assert quadrature_agrees(second, at(mom.gelu_second_moment(), sigma))
    assert quadrature_agrees(gaussian_quadrature(lambda x: mom.mp_standard_cdf(x) ** 2, sigma),
                             at(mom.cdf_squared_mean(), sigma))
    without_stein_term = SIGMA**2 * mom.cdf_squared_mean()  # forgets 2E[XΦφ]
    assert not quadrature_agrees(second, at(without_stein_term, sigma))


# ---- LayerNorm outputs -----------------------------------------------------------------------
def layernorm_sums(variance_divisor=None, eps=0):
    """(Σn_i, Σn_i²) of n = LN(x) for general d, over the sum symbols of x."""
    alg = SumAlgebra()
    n = norms.layernorm_entry(alg, eps, variance_divisor=None if variance_divisor is None else variance_divisor(alg.d))
    return alg, alg.total(n), alg.total(n**2)


def witness(alg, eps=None):
    point = alg.instance({"x": [1, 2, 4, -3]})
    return [{**point, **({} if eps is None else {eps: sp.Rational(1, 10)})}]


def test_layernorm_output_sums_for_general_d():
    alg, total, squares = layernorm_sums()
    assert decide(total, 0, []).proven
    assert decide(squares, alg.d, []).proven
    second, covariance = mom.exchangeable_moments(alg.d, alg.d, 0)
    assert decide(second, 1, []).proven
    assert decide(covariance, -1 / (alg.d - 1), []).proven


def test_layernorm_output_moments_fail_for_wrong_variants():
    alg, _, squares = layernorm_sums(variance_divisor=lambda d: d - 1)  # unbiased variance
    second, _ = mom.exchangeable_moments(alg.d, squares, 0)
    assert decide(second, 1, witness(alg)).refuted
    eps = sp.Symbol("epsilon", positive=True)
    alg, _, squares = layernorm_sums(eps=eps)  # eps > 0 shrinks Σn² below d
    assert decide(squares, alg.d, witness(alg, eps)).refuted


def sphere_point(d, angles):
    """A unit vector of 1^⊥ ⊂ R^d (d = 3: one angle; d = 4: polar and azimuth), Helmert basis."""
    basis = []
    for k in range(1, d):
        v = [mpmath.mpf(1)] * k + [mpmath.mpf(-k)] + [mpmath.mpf(0)] * (d - k - 1)
        norm = mpmath.sqrt(k * (k + 1))
        basis.append([c / norm for c in v])
    if d == 3:
        (t,) = angles
        coefficients = [mpmath.cos(t), mpmath.sin(t)]
    else:
        theta, phi = angles
        coefficients = [mpmath.sin(theta) * mpmath.cos(phi), mpmath.sin(theta) * mpmath.sin(phi), mpmath.cos(theta)]
    return [mpmath.fsum(c * b[i] for c, b in zip(coefficients, basis)) for i in range(d)]


def layernorm_moment_quadrature(d, entry, variance_divisor=None):
    """E[f(LN(X))] for X ~ N(0, I_d): LN(X) depends on the uniform direction of CX only."""
    xs = norms.vector_symbols("x", d)
    layernorm = sp.lambdify(xs, norms.layernorm_vector(xs, 0, variance_divisor=variance_divisor), "mpmath")

    def integrate(dps):
        with mpmath.workdps(dps):
            if d == 3:
                return mpmath.quad(lambda t: entry(layernorm(*sphere_point(3, [t]))), [0, mpmath.pi, 2 * mpmath.pi]) / (
                    2 * mpmath.pi)
            return mpmath.quad(lambda th, ph: entry(layernorm(*sphere_point(4, [th, ph]))) * mpmath.sin(th),
                               [0, mpmath.pi], [0, mpmath.pi, 2 * mpmath.pi]) / (4 * mpmath.pi)

    return integrate


@pytest.mark.parametrize("d", [3])
def test_layernorm_output_moments_by_quadrature(d):
    assert quadrature_agrees(layernorm_moment_quadrature(d, lambda n: n[0] ** 2), 1)
    assert quadrature_agrees(layernorm_moment_quadrature(d, lambda n: n[0] * n[1]), sp.Rational(-1, d - 1))
    assert not quadrature_agrees(layernorm_moment_quadrature(d, lambda n: n[0] * n[1]), sp.Rational(-1, d))
    unbiased = layernorm_moment_quadrature(d, lambda n: n[0] ** 2, variance_divisor=d - 1)
    assert not quadrature_agrees(unbiased, 1)


def permutation_moments(n):
    """(E[n_1²], E[n_1 n_2]) when the row's coordinates come in uniformly random order: the
    average of n_i² over i and of n_i n_j over ordered pairs i ≠ j."""
    d = len(n)
    with mpmath.workdps(SPOT_DIGITS):
        second = mpmath.fsum(v**2 for v in n) / d
        cross = mpmath.fsum(n[i] * n[j] for i in range(d) for j in range(d) if i != j) / (d * (d - 1))
    return second, cross


@pytest.mark.parametrize("d", range(3, 9))
def test_layernorm_moments_on_reference_outputs_of_permuted_rows(d):
    for row in sample_rows(d, count=2, seed=30 + d, offset=4.0):
        second, cross = permutation_moments(reference("layernorm", row, eps=0.0, affine="none")["y"])
        with mpmath.workdps(SPOT_DIGITS):
            claimed_cross = mpmath.mpf(-1) / (d - 1)
        assert agrees([second, cross], [1, claimed_cross])
        # eps > 0 (the LN a model actually runs) gives a second moment below 1: the claim is eps = 0
        with_eps, _ = permutation_moments(reference("layernorm", row, eps=0.5, affine="none")["y"])
        assert not agrees([with_eps], [1])
