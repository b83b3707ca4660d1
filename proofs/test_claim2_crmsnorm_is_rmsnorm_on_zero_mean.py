"""Claim 2: CRMSNorm(x[:-1]) = RMSNorm(x)[:-1] for zero-mean x, eps included.

Source: Jiang et al. 2023 (arXiv 2305.14858), definition of CRMSNorm:
CRMSNorm(z) = z / sqrt((Σz_i² + (Σz_i)²)/d + eps) with z ∈ R^{d−1} and divisor d (the model
width), the same eps as RMSNorm. A CRMSNorm that divides by d − 1, or an input that is not
zero-mean, breaks the identity; the same procedure finds the counterexample.

Proof for general d: a zero-mean x has x_d = −Σ_{l<d} z_l, so RMSNorm's sum of squares over d
coordinates is Σz² + (Σz)² (a sum over d − 1 coordinates plus the last term). Written over the
sums of z (powersums.py, width d − 1) the two entries coincide. Cross-check: d = 2..8 explicit.
"""

import numpy as np
import pytest
import sympy as sp

from normtheory.symbolic import normalizers as norms
from normtheory.symbolic.identities import decide, rational_points
from normtheory.symbolic.powersums import SumAlgebra
from normtheory.symbolic.spotcheck import agrees, evaluate_at, mp_function, reference, sample_rows

EPS = sp.Symbol("epsilon", nonnegative=True)
MODES = ("inside", "outside")


def rmsnorm_entry_of_completed_vector(alg, eps_mode, last):
    """RMSNorm entry i (i < d) of x = (z, last): the statistic sums d − 1 entries plus last²."""
    z = alg.i["x"]
    statistic = (alg.total(z**2) + last**2) / alg.d
    return norms.divide_by_normalizer(z, statistic, EPS, eps_mode)


def general_points(alg, extra=None):
    extra = extra or {}
    return [{**alg.instance({"x": [1, -3, 5]}, i=i), EPS: sp.Rational(1, 10), **extra} for i in range(3)]


@pytest.mark.parametrize("eps_mode", MODES)
def test_crmsnorm_equals_rmsnorm_on_zero_mean_input_for_general_d(eps_mode):
    alg = SumAlgebra(width=SumAlgebra().d - 1)
    zero_mean_last = -alg.total(alg.i["x"])
    verdict = decide(norms.crmsnorm_entry(alg, EPS, eps_mode),
                     rmsnorm_entry_of_completed_vector(alg, eps_mode, zero_mean_last), general_points(alg))
    assert verdict.proven, verdict


@pytest.mark.parametrize("eps_mode", MODES)
@pytest.mark.parametrize("d", range(2, 9))
def test_crmsnorm_equals_rmsnorm_on_zero_mean_input_for_each_d(d, eps_mode):
    zs = norms.vector_symbols("z", d - 1)
    xs = zs + [-sum(zs)]
    points = [{**p, EPS: sp.Rational(1, 10)} for p in rational_points(zs)]
    verdict = decide(norms.crmsnorm_vector(zs, EPS, eps_mode), norms.rmsnorm_vector(xs, EPS, eps_mode)[:-1], points)
    assert verdict.proven, verdict


@pytest.mark.parametrize("eps_mode", MODES)
def test_crmsnorm_dividing_by_d_minus_1_is_refuted(eps_mode):
    alg = SumAlgebra(width=SumAlgebra().d - 1)
    wrong = norms.crmsnorm_entry(alg, EPS, eps_mode, divisor=alg.d - 1)
    verdict = decide(wrong, rmsnorm_entry_of_completed_vector(alg, eps_mode, -alg.total(alg.i["x"])),
                     general_points(alg))
    assert verdict.refuted, verdict
    zs = norms.vector_symbols("z", 4)
    points = [{**p, EPS: sp.Rational(1, 10)} for p in rational_points(zs)]
    explicit = decide(norms.crmsnorm_vector(zs, EPS, eps_mode, divisor=4),
                      norms.rmsnorm_vector(zs + [-sum(zs)], EPS, eps_mode)[:-1], points)
    assert explicit.refuted, explicit


def test_input_that_is_not_zero_mean_is_refuted():
    alg = SumAlgebra(width=SumAlgebra().d - 1)
    free_last = sp.Symbol("x_d", real=True)
    verdict = decide(norms.crmsnorm_entry(alg, EPS), rmsnorm_entry_of_completed_vector(alg, "inside", free_last),
                     general_points(alg, {free_last: 2}))
    assert verdict.refuted, verdict


def zero_mean_row(d, seed):
    """A float64 row with exactly zero sum: dyadic entries (multiples of 2^-12) and a balancing last one."""
    z = np.round(sample_rows(d - 1, seed=seed)[1] * 4096) / 4096
    return np.append(z, -z.sum())  # exact: every partial sum is a short dyadic


@pytest.mark.parametrize("eps_mode", MODES)
@pytest.mark.parametrize("d", [2, 5, 8])
def test_spot_check_against_reference(d, eps_mode):
    zs = norms.vector_symbols("z", d - 1)
    crmsnorm = mp_function(zs + [EPS], norms.crmsnorm_vector(zs, EPS, eps_mode))
    for seed in range(2):
        x = zero_mean_row(d, seed)
        assert sum(map(float, x)) == 0.0 and np.sum(x[:-1]) == -x[-1]
        for eps in (1e-6, 0.5):
            expected_crms = reference("crmsnorm", x[:-1], eps=eps, eps_mode=eps_mode, affine="none")["y"]
            expected_rms = reference("rmsnorm", x, eps=eps, eps_mode=eps_mode, affine="none")["y"][:-1]
            assert agrees(evaluate_at(crmsnorm, *x[:-1], eps), expected_crms)
            assert agrees(expected_crms, expected_rms)  # the identity, on the reference's own values


def test_spot_check_rejects_divisor_d_minus_1():
    d = 6
    zs = norms.vector_symbols("z", d - 1)
    wrong = mp_function(zs + [EPS], norms.crmsnorm_vector(zs, EPS, divisor=d - 1))
    x = zero_mean_row(d, 0)
    expected = reference("rmsnorm", x, eps=1e-6, affine="none")["y"][:-1]
    assert not agrees(evaluate_at(wrong, *x[:-1], 1e-6), expected)
