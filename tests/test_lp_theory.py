"""The closed forms of theory/lp/conditioning.py against independent computations: torch autograd of the
formula (float64), numpy's SVD, mpmath derivatives and integrals. Each check is also shown to
reject a deliberately wrong variant through the same comparison."""

import math

import mpmath
import numpy as np
import pytest
import torch

from normtheory.theory.lp import conditioning as lp

EPS = 1e-6
F64 = 2.0**-53


def _autograd_jacobian(x, p, eps):
    """Independent: the registry formula written out in torch float64, differentiated by autograd."""
    t = torch.tensor(x, dtype=torch.float64)

    def normalize(row):
        if math.isinf(p):
            return row / torch.maximum(row.abs().max(), torch.tensor(math.sqrt(eps), dtype=torch.float64))
        return row / ((row.abs() ** p).mean() + eps ** (p / 2)) ** (1 / p)

    return torch.autograd.functional.jacobian(normalize, t).numpy()


def _rows(seed, d=12):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(d), rng.standard_normal(d) * 1e-3, rng.standard_cauchy(d)]


def _close(a, b, scale):
    """Agreement to a few hundred binary64 roundings of the largest entry (float64 evaluation
    of both sides; d ≤ 12 terms each)."""
    return np.abs(a - b).max() <= 256 * F64 * scale


@pytest.mark.parametrize("p", (1.5, 2, 3, 4, 8, math.inf))
def test_jacobian_closed_form_matches_autograd(p):
    for x in _rows(1):
        auto = _autograd_jacobian(x, p, EPS)
        assert _close(lp.jacobian(x, p, EPS), auto, np.abs(auto).max())


def test_jacobian_check_rejects_a_wrong_closed_form():
    x = _rows(2)[0]
    p = 3
    auto = _autograd_jacobian(x, p, EPS)
    y = x / lp.power_mean_norm(x, p, EPS)[0]
    N = lp.power_mean_norm(x, p, EPS)[0]
    wrong = (np.eye(x.size) - np.outer(y, np.sign(y) * np.abs(y) ** (p - 1))) / N  # forgets 1/d
    assert not _close(wrong, auto, np.abs(auto).max())


@pytest.mark.parametrize("p", (1, 1.5, 2, 3, 8, math.inf))
@pytest.mark.parametrize("eps", (0.0, EPS, 10.0))
def test_rank_two_singular_values_match_the_svd(p, eps):
    for x in _rows(3, d=16):
        sv = np.linalg.svd(lp.jacobian(x, p, eps), compute_uv=False)
        upper, lower, N = lp.rank_two_singular_values(x, p, eps)
        predicted = np.sort(np.concatenate([[upper[0], lower[0]], np.ones(x.size - 2)]))[::-1] / N[0]
        assert np.abs(np.sort(sv)[::-1] - predicted).max() <= 64 * F64 * x.size * sv.max()
        assert lp.spectral_norm(x, p, eps)[0] == pytest.approx(sv.max(), rel=64 * F64 * x.size)


def test_singular_value_check_rejects_dropping_the_floor_share():
    x = _rows(4, d=16)[1]  # rows of size 1e-3: the floor √eps = 1e-3 holds a large share
    p = 3
    sv = np.linalg.svd(lp.jacobian(x, p, EPS), compute_uv=False)
    y = x / lp.power_mean_norm(x, p, EPS)[0]
    v = np.sign(y) * np.abs(y) ** (p - 1) / x.size
    wrong_upper = math.sqrt((y @ y) * (v @ v))  # the eps = 0 formula
    assert abs(wrong_upper / lp.power_mean_norm(x, p, EPS)[0] - sv.max()) > 1e-3 * sv.max()


def test_rmsnorm_is_perfectly_conditioned_and_other_p_are_not():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 256))
    assert np.abs(lp.relative_condition(x, 2, 0.0) - 1).max() <= 1e-12
    for p in (1, 1.5, 3, 4, 8, math.inf):
        assert (lp.relative_condition(x, p, 0.0) > 1 + 1e-3).all()
    flat = np.sign(rng.standard_normal((4, 256)))  # |x| constant: Cauchy–Schwarz is tight
    for p in (1, 3, 8):
        assert np.abs(lp.relative_condition(flat, p, 0.0) - 1).max() <= 1e-12


@pytest.mark.parametrize("p", (1, 1.5, 3, 4, 8))
def test_condition_is_the_moment_ratio_at_eps_zero_and_gaussian_moments_are_right(p):
    x = np.random.default_rng(6).standard_normal((8, 128))
    m = lambda k: (np.abs(x) ** k).mean(axis=1)  # noqa: E731
    ratio = np.sqrt(m(2) * m(2 * p - 2)) / m(p)
    assert np.abs(lp.relative_condition(x, p, 0.0) - ratio).max() <= 1e-12 * ratio.max()
    # the Gaussian moments against mpmath's quadrature of |g|^k·φ(g)
    for k in (p, 2 * p - 2):
        quad = 2 * mpmath.quad(lambda g, k=k: g**k * mpmath.npdf(g), [0, mpmath.inf])
        assert lp.gaussian_abs_moment(k) == pytest.approx(float(quad), rel=1e-12)
    wrong = lp.gaussian_abs_moment(p + 1)  # a wrong order is detected by the same comparison
    assert wrong != pytest.approx(float(2 * mpmath.quad(lambda g: g**p * mpmath.npdf(g), [0, mpmath.inf])), rel=1e-6)


def test_gaussian_limits_in_closed_form():
    assert lp.gaussian_condition_limit(1) ** 2 == pytest.approx(math.pi / 2, rel=1e-14)
    assert lp.gaussian_condition_limit(2) == pytest.approx(1.0, rel=1e-14)
    assert lp.gaussian_condition_limit(3) ** 2 == pytest.approx(3 * math.pi / 8, rel=1e-14)
    assert lp.gaussian_condition_limit(4) ** 2 == pytest.approx(5 / 3, rel=1e-14)


def test_p1_column_jump_and_the_hoelder_region_match_mpmath_derivatives(monkeypatch):
    x = np.array([0.7, -1.2, 0.0, 0.4, 2.0, -0.3])
    j, d = 2, x.size
    monkeypatch.setattr(mpmath.mp, "prec", 200)  # restored after the test: mpmath's context is global

    def y_i(p, i):
        def f(xj):
            row = [mpmath.mpf(v) for v in x]
            row[j] = xj
            N = (sum(abs(v) ** p for v in row) / d + mpmath.mpf(EPS) ** (mpmath.mpf(p) / 2)) ** (1 / mpmath.mpf(p))
            return row[i] / N
        return f

    h = mpmath.mpf(2) ** -80
    # p = 1: one-sided difference quotients of column j differ by the closed-form jump
    jump = [(y_i(1, i)(h) - y_i(1, i)(0)) / h - (y_i(1, i)(0) - y_i(1, i)(-h)) / h for i in range(d) if i != j]
    measured = float(mpmath.sqrt(sum(v * v for v in jump)))
    assert measured == pytest.approx(lp.column_jump_at_zero(x, j, 1, EPS), rel=1e-9)
    assert lp.column_jump_at_zero(x, j, 1.5, EPS) == 0.0
    # 1 < p < 2: the second derivative of N grows like |x_j|^(p-2) (ratio 10^(2-p) per decade)
    p = 1.5
    second = []
    for xj in (1e-6, 1e-7):
        row = x.copy()
        row[j] = xj
        second.append(lp.norm_second_derivative(row, j, p, EPS))
        def N_of(t, row=row):
            vals = [mpmath.mpf(v) for v in row]
            vals[j] = t
            return (sum(abs(v) ** p for v in vals) / d + mpmath.mpf(EPS) ** (mpmath.mpf(p) / 2)) ** (1 / mpmath.mpf(p))
        assert second[-1] == pytest.approx(float(mpmath.diff(N_of, mpmath.mpf(xj), 2)), rel=1e-8)
    assert second[1] / second[0] == pytest.approx(10 ** (2 - p), rel=1e-3)


def test_eps_makes_the_map_linear_at_zero_and_p_to_infinity_gives_the_max_norm():
    assert np.allclose(lp.jacobian(np.zeros(8), 3, EPS), np.eye(8) / math.sqrt(EPS), rtol=0, atol=0)
    x = np.random.default_rng(7).standard_normal((4, 64))
    n_inf = lp.power_mean_norm(x, math.inf, EPS)
    for p in (4, 16, 64, 256):
        lower, upper = lp.max_norm_gap_bounds(x, p, EPS)
        ratio = lp.power_mean_norm(x, p, EPS) / n_inf
        assert (lower <= ratio).all() and (ratio <= upper).all()
    assert (np.abs(lp.power_mean_norm(x, 4096, EPS) / n_inf - 1) < math.log(2 * 64) / 4096).all()
