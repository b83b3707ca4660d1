"""Claim 1: LN(x) = RMSNorm(x − μ1), for either eps placement used the same way on both sides.

Source: Jiang et al. 2023, "Pre-RMSNorm and Pre-CRMSNorm Transformers" (arXiv 2305.14858),
definitions of LN and RMSNorm (LN written with ‖x‖²/d − μ² as the variance). The identity
needs the biased variance and the same eps placement on both sides; the same decision
procedure finds a counterexample when the placement differs (LN inside, RMSNorm outside) or
when one side uses the unbiased variance.

Proof for general d: entry i of both sides is written over sums Σx, Σx² (powersums.py);
the variance identity Σ(x − μ)²/d = ‖x‖²/d − μ² is then linearity of the sum, and the two
entries become the same expression. Cross-check: every d from 2 to 8 with explicit symbols.
"""

import pytest
import sympy as sp

from normtheory.symbolic import normalizers as norms
from normtheory.symbolic.identities import decide, rational_points
from normtheory.symbolic.powersums import SumAlgebra
from normtheory.symbolic.spotcheck import agrees, evaluate_at, mp_function, reference, sample_rows

EPS = sp.Symbol("epsilon", nonnegative=True)
MODES = ("inside", "outside")
GENERAL_D_WITNESS = {"x": [1, 2, 4]}  # a concrete row from which counterexamples are drawn


def general_points(alg):
    return [{**alg.instance(GENERAL_D_WITNESS, i=i), EPS: sp.Rational(1, 10)} for i in range(3)]


def centred_rmsnorm_vector(xs, eps_mode):
    mu = sum(xs) / sp.Integer(len(xs))
    return norms.rmsnorm_vector([x - mu for x in xs], EPS, eps_mode)


@pytest.mark.parametrize("eps_mode", MODES)
def test_layernorm_equals_rmsnorm_of_centred_input_for_general_d(eps_mode):
    alg = SumAlgebra()
    rms_of_centred = norms.rmsnorm_entry(alg, EPS, eps_mode, of=norms.centred_entry(alg))
    for layernorm in (norms.layernorm_jiang_entry(alg, EPS, eps_mode), norms.layernorm_entry(alg, EPS, eps_mode)):
        verdict = decide(layernorm, rms_of_centred, general_points(alg))
        assert verdict.proven, verdict


@pytest.mark.parametrize("eps_mode", MODES)
@pytest.mark.parametrize("d", range(2, 9))
def test_layernorm_equals_rmsnorm_of_centred_input_for_each_d(d, eps_mode):
    xs = norms.vector_symbols("x", d)
    points = [{**p, EPS: sp.Rational(1, 10)} for p in rational_points(xs)]
    verdict = decide(norms.layernorm_vector(xs, EPS, eps_mode), centred_rmsnorm_vector(xs, eps_mode), points)
    assert verdict.proven, verdict


@pytest.mark.parametrize(("ln_mode", "rms_mode"), [("inside", "outside"), ("outside", "inside")])
def test_mismatched_eps_placement_is_refuted(ln_mode, rms_mode):
    alg = SumAlgebra()
    verdict = decide(norms.layernorm_entry(alg, EPS, ln_mode),
                     norms.rmsnorm_entry(alg, EPS, rms_mode, of=norms.centred_entry(alg)), general_points(alg))
    assert not verdict.proven and verdict.refuted, verdict
    # and with explicit symbols, for a concrete width
    xs = norms.vector_symbols("x", 4)
    points = [{**p, EPS: sp.Rational(1, 10)} for p in rational_points(xs)]
    explicit = decide(norms.layernorm_vector(xs, EPS, ln_mode), centred_rmsnorm_vector(xs, rms_mode), points)
    assert explicit.refuted, explicit


@pytest.mark.parametrize("eps_mode", MODES)
def test_unbiased_variance_on_one_side_is_refuted(eps_mode):
    alg = SumAlgebra()
    unbiased = norms.layernorm_entry(alg, EPS, eps_mode, variance_divisor=alg.d - 1)
    verdict = decide(unbiased, norms.rmsnorm_entry(alg, EPS, eps_mode, of=norms.centred_entry(alg)),
                     general_points(alg))
    assert verdict.refuted, verdict


@pytest.mark.parametrize("eps_mode", MODES)
@pytest.mark.parametrize("d", [3, 8])
def test_spot_check_against_reference(d, eps_mode):
    """The symbolic LN and RMSNorm(centred) agree with normtheory.reference to 100 digits."""
    xs = norms.vector_symbols("x", d)
    layernorm = mp_function(xs + [EPS], norms.layernorm_vector(xs, EPS, eps_mode))
    rms_of_centred = mp_function(xs + [EPS], centred_rmsnorm_vector(xs, eps_mode))
    rmsnorm = mp_function(xs + [EPS], norms.rmsnorm_vector(xs, EPS, eps_mode))
    for eps in (1e-5, 0.25):
        for row in sample_rows(d, offset=3.0):
            expected_ln = reference("layernorm", row, eps=eps, eps_mode=eps_mode, affine="none")["y"]
            expected_rms = reference("rmsnorm", row, eps=eps, eps_mode=eps_mode, affine="none")["y"]
            assert agrees(evaluate_at(layernorm, *row, eps), expected_ln)
            assert agrees(evaluate_at(rms_of_centred, *row, eps), expected_ln)
            assert agrees(evaluate_at(rmsnorm, *row, eps), expected_rms)


def test_spot_check_rejects_mismatched_placement():
    """The same numeric path tells LN-inside from RMSNorm-outside of the centred row."""
    d = 5
    xs = norms.vector_symbols("x", d)
    wrong = mp_function(xs + [EPS], centred_rmsnorm_vector(xs, "outside"))
    row = sample_rows(d)[1]
    expected = reference("layernorm", row, eps=1e-5, eps_mode="inside", affine="none")["y"]
    assert not agrees(evaluate_at(wrong, *row, 1e-5), expected)
