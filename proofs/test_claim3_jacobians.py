"""Claim 3: Jacobians of LN, RMSNorm, CRMSNorm and the Lp normalizer (general p), in closed form.

    J_ij = r·(δ_ij − [LN] 1/d − ρ·ŷ_i·φ_j/d)      (normtheory/symbolic/jacobians.py)
With eps = 0: J_RMS x = 0, J_LN x = 0, and J_LN 1 = 0 for every eps. Xiong et al. 2020
(arXiv 2002.04745) Lemma 3: with eps = 0, J_LN = (√d/‖c‖)·P with c = x − μ1 and
P = I − 11ᵀ/d − ccᵀ/‖c‖², an orthogonal projection of rank d − 2; so ‖J_LN‖₂ = √d/‖c‖ for
d ≥ 3, and at d = 2 P = 0: LayerNorm without eps is the constant ±(1, −1), J = 0.
The vector-Jacobian product of normtheory/reference/formulas.py equals Σ_i g_i J_ij.

Proofs are for general d (powersums.py): sympy differentiates the definitions through the sum
symbols and the difference from the closed form simplifies to 0. For Lp, general p, each sign
pattern of (x_i, x_j) is a separate case (|x| is not differentiable at 0; p > 1 there, and p = 1
excludes 0). P² = P and tr P = d − 2 are also general-d sums (with Σc = 0). Numeric: sympy's
Jacobian of the explicit definitions, the instantiated closed form and the reference's VJP agree
to 100 digits; the singular values of the reference Jacobian give Lemma 3's norm.
"""

import itertools

import mpmath
import numpy as np
import pytest
import sympy as sp

from normtheory.symbolic import jacobians as jac
from normtheory.symbolic import normalizers as norms
from normtheory.symbolic.identities import decide
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
    worst_disagreement,
)

EPS = sp.Symbol("epsilon", nonnegative=True)
P = sp.Symbol("p", positive=True)
MODES = ("inside", "outside")
CASES = [(op, mode) for op in jac.OPS for mode in MODES]
WITNESS = [3, -1, 2, 5]  # a concrete row (CRMSNorm: z) from which counterexamples are drawn
WITNESS_G = [1, 2, -2, 1]


def points(alg, with_eps=True, i=0, j=1):
    values = {"x": WITNESS, "g": WITNESS_G} if "g" in alg.fields else {"x": WITNESS}
    extra = {EPS: sp.Rational(1, 10)} if with_eps else {}
    return [{**alg.instance(values, i=i, j=j), **extra, P: sp.Rational(5, 2)}]


def sign_cases(alg, op, expressions_pair, indices=("i", "j")):
    """For Lp, split |x| by the sign of each coordinate involved; other ops need no split."""
    if op != "lpnorm":
        return [expressions_pair]
    magnitudes = {idx: sp.Symbol(f"a_{idx}", positive=True) for idx in indices}
    coordinate = {"i": alg.i["x"], "j": alg.j["x"]}
    cases = []
    for signs in itertools.product((1, -1), repeat=len(indices)):
        sub = {coordinate[idx]: s * magnitudes[idx] for idx, s in zip(indices, signs)}
        cases.append(tuple([e.xreplace(sub) for e in side] if isinstance(side, list) else side.xreplace(sub)
                           for side in expressions_pair))
    return cases


@pytest.mark.parametrize(("op", "eps_mode"), CASES)
def test_closed_form_jacobian_for_general_d(op, eps_mode):
    alg = jac.algebra_for(op)
    p = P if op == "lpnorm" else None
    derivative = list(jac.derivative_entries(alg, jac.forward_entry(alg, op, EPS, eps_mode, p)))
    closed = list(jac.closed_form_entries(alg, jac.closed_form(alg, op, EPS, eps_mode, p)))
    for lhs, rhs in sign_cases(alg, op, (derivative, closed)):
        verdict = decide(lhs, rhs, [])
        assert verdict.proven, verdict


@pytest.mark.parametrize(("op", "eps_mode"), CASES)
def test_reference_vjp_formula_is_the_transposed_jacobian_for_general_d(op, eps_mode):
    alg = jac.algebra_for(op, ("x", "g"))
    p = P if op == "lpnorm" else None
    from_derivative = jac.vjp_from_derivative(alg, jac.forward_entry(alg, op, EPS, eps_mode, p))
    reference_formula = jac.vjp_reference_formula(alg, jac.closed_form(alg, op, EPS, eps_mode, p))
    for lhs, rhs in sign_cases(alg, op, (from_derivative, reference_formula), indices=("j",)):
        verdict = decide(lhs, rhs, [])
        assert verdict.proven, verdict


@pytest.mark.parametrize(("op", "eps_mode", "drop"), [
    ("layernorm", "inside", "mean"),      # forgets that LN centres: the −1/d term
    ("crmsnorm", "inside", "crms_sum"),   # forgets the (Σz)² part of the statistic: Σŷ in φ
    ("rmsnorm", "outside", "rho"),        # treats eps outside as if it were inside
    ("lpnorm", "outside", "rho"),
])
def test_wrong_jacobian_terms_are_refuted(op, eps_mode, drop):
    alg = jac.algebra_for(op)
    p = P if op == "lpnorm" else None
    derivative = list(jac.derivative_entries(alg, jac.forward_entry(alg, op, EPS, eps_mode, p)))
    wrong = list(jac.closed_form_entries(alg, jac.closed_form(alg, op, EPS, eps_mode, p, drop=drop)))
    verdict = decide(derivative, wrong, points(alg))
    assert verdict.refuted, verdict


def test_lp_jacobian_with_wrong_exponent_is_refuted():
    alg = jac.algebra_for("lpnorm")
    derivative = list(jac.derivative_entries(alg, jac.forward_entry(alg, "lpnorm", EPS, "inside", P)))
    form = jac.closed_form(alg, "lpnorm", EPS, "inside", P)
    form.phi_j = sp.sign(alg.j["x"]) * sp.Abs(form.yhat_j) ** P  # p instead of p − 1
    verdict = decide(derivative, list(jac.closed_form_entries(alg, form)), points(alg))
    assert verdict.refuted, verdict


# ---- eps = 0: what the Jacobians annihilate -------------------------------------------------
def jacobian_times(alg, entry_i, vector_j):
    """(J v)_i = Σ_j J_ij v_j for a vector given by its entry at index j."""
    own, through = alg.partial(entry_i, "x")
    return own * vector_j.xreplace({alg.j["x"]: alg.i["x"]}) + alg.total_over_j(through * vector_j)


@pytest.mark.parametrize(("op", "vector"), [("rmsnorm", "x"), ("layernorm", "x"), ("layernorm", "ones"),
                                            ("crmsnorm", "x")])
@pytest.mark.parametrize("eps_mode", MODES)
def test_jacobian_annihilates_x_and_ones_at_eps_zero(op, vector, eps_mode):
    alg = jac.algebra_for(op)
    v_j = alg.j["x"] if vector == "x" else sp.Integer(1)
    product = jacobian_times(alg, jac.forward_entry(alg, op, 0, eps_mode), v_j)
    verdict = decide(product, 0, points(alg, with_eps=False))
    assert verdict.proven, verdict


@pytest.mark.parametrize("eps_mode", MODES)
def test_layernorm_jacobian_annihilates_ones_for_every_eps(eps_mode):
    alg = jac.algebra_for("layernorm")
    verdict = decide(jacobian_times(alg, jac.forward_entry(alg, "layernorm", EPS, eps_mode), sp.Integer(1)), 0,
                     points(alg))
    assert verdict.proven, verdict


@pytest.mark.parametrize(("op", "vector", "eps"), [
    ("rmsnorm", "x", EPS),        # eps > 0 breaks scale invariance
    ("rmsnorm", "ones", 0),       # RMSNorm is not shift invariant
    ("crmsnorm", "ones", 0),
])
def test_false_annihilations_are_refuted(op, vector, eps):
    alg = jac.algebra_for(op)
    v_j = alg.j["x"] if vector == "x" else sp.Integer(1)
    verdict = decide(jacobian_times(alg, jac.forward_entry(alg, op, eps, "inside"), v_j), 0, points(alg))
    assert verdict.refuted, verdict


# ---- Xiong et al. Lemma 3 -------------------------------------------------------------------
def projection_entries(alg, a, b):
    """P_ab off the diagonal (A_ab) for fixed coordinates a, b: −1/d − c_a c_b/‖c‖²."""
    mean = alg.mean(alg.i["x"])
    norm_sq = alg.total((alg.i["x"] - mean) ** 2)
    return -sp.Integer(1) / alg.d - (a - mean) * (b - mean) / norm_sq, norm_sq, mean


def test_layernorm_jacobian_is_scaled_projection_for_general_d():
    """J_LN (eps = 0) = (√d/‖c‖)·P entrywise, from the closed form proven above."""
    alg = jac.algebra_for("layernorm")
    off, diagonal = jac.closed_form_entries(alg, jac.closed_form(alg, "layernorm", 0, "inside"))
    A_ij, norm_sq, _ = projection_entries(alg, alg.i["x"], alg.j["x"])
    scale = sp.sqrt(alg.d) / sp.sqrt(norm_sq)
    A_ii = A_ij.xreplace({alg.j["x"]: alg.i["x"]})
    verdict = decide([off, diagonal], [scale * A_ij, scale * (1 + A_ii)], points(alg, with_eps=False))
    assert verdict.proven, verdict


def test_projection_is_idempotent_with_trace_d_minus_2_for_general_d():
    """P = I + A: P² = P ⟺ A_ab + Σ_i A_ai A_ib = 0 (δ terms summed by hand); tr P = d + Σ_i A_ii."""
    alg = jac.algebra_for("layernorm")
    a, b = sp.symbols("x_a x_b", real=True)
    A_ab, _, _ = projection_entries(alg, a, b)
    A_ai, _, _ = projection_entries(alg, a, alg.i["x"])
    A_ib, _, _ = projection_entries(alg, alg.i["x"], b)
    A_ii, _, _ = projection_entries(alg, alg.i["x"], alg.i["x"])
    witness = {**alg.instance({"x": WITNESS}), a: 7, b: -2}
    idempotent = decide(A_ab + alg.total(A_ai * A_ib), 0, [witness])
    assert idempotent.proven, idempotent
    trace = decide(alg.d + alg.total(A_ii), alg.d - 2, [witness])
    assert trace.proven, trace
    # the same code path rejects the projection that forgets the centring (I − ccᵀ/‖c‖² alone
    # is a projection of trace d − 1, not d − 2)
    wrong = decide(alg.d + alg.total(A_ii + 1 / alg.d), alg.d - 2, [witness])
    assert wrong.refuted, wrong


def expected_norm(row):
    with mpmath.workdps(SPOT_DIGITS):
        values = [mpmath.mpf(float(v)) for v in row]
        mean = mpmath.fsum(values) / len(values)
        return mpmath.sqrt(len(values)) / mpmath.sqrt(mpmath.fsum((v - mean) ** 2 for v in values))


@pytest.mark.parametrize("d", [2, 3, 4, 7])
def test_lemma3_norm_on_reference_jacobian(d):
    """‖J_LN‖₂ = √d/‖c‖ (d ≥ 3) and J = 0 (d = 2): singular values of the reference's Jacobian."""
    for row in sample_rows(d, offset=5.0):
        J = reference_jacobian("layernorm", row, eps=0.0, affine="none")
        norm, claimed = spectral_norm(J), expected_norm(row)
        if d == 2:
            assert norm <= AGREEMENT * claimed  # LN is constant at d = 2
            assert not agrees([norm], [claimed])  # Lemma 3's formula does not extend to d = 2
        else:
            assert agrees([norm], [claimed])
            assert not agrees([norm], [claimed * mpmath.sqrt(mpmath.mpf(d) / (d - 1))])  # a wrong constant


# ---- numeric: explicit sympy Jacobian vs closed form vs reference ----------------------------
def explicit_vector(op, xs, eps_mode, p):
    if op == "lpnorm":
        return norms.lpnorm_vector(xs, EPS, p, eps_mode)
    return {"layernorm": norms.layernorm_vector, "rmsnorm": norms.rmsnorm_vector,
            "crmsnorm": norms.crmsnorm_vector}[op](xs, EPS, eps_mode)


@pytest.mark.parametrize(("op", "eps_mode"), CASES)
def test_spot_check_jacobians_against_reference(op, eps_mode):
    """Rows of width 2, 3 and 5; Lp at p = 3 and p = 3/2; eps 1e-6 and 0.25."""
    for d, p in itertools.product((2, 3, 5), (sp.Integer(3), sp.Rational(3, 2)) if op == "lpnorm" else (None,)):
        n = d - 1 if op == "crmsnorm" else d
        xs = norms.vector_symbols("x", n)
        alg = jac.algebra_for(op)
        explicit = sp.Matrix(explicit_vector(op, xs, eps_mode, p)).jacobian(xs)
        off, diagonal = jac.closed_form_entries(alg, jac.closed_form(alg, op, EPS, eps_mode, p))
        closed = sp.Matrix(n, n, lambda a, b: alg.explicit(diagonal if a == b else off, {"x": xs}, a, b, d=d))  # noqa: B023
        explicit_fn, closed_fn = mp_function(xs + [EPS], list(explicit)), mp_function(xs + [EPS], list(closed))
        for row in sample_rows(n, count=2, seed=d):
            for eps in (1e-6, 0.25):
                kwargs = {"eps": eps, "eps_mode": eps_mode, "affine": "none"}
                if p is not None:
                    kwargs["p"] = float(p)
                expected = list(reference_jacobian(op, row, **kwargs))
                assert agrees(evaluate_at(explicit_fn, *row, eps), expected), (d, p, row, eps)
                assert agrees(evaluate_at(closed_fn, *row, eps), expected), (d, p, row, eps)


@pytest.mark.parametrize("affine", ["weight", "weight_bias", "offset_weight"])
def test_spot_check_affine_gradients_against_reference(affine):
    """With an affine map, gx = Jᵀ(gy ⊙ w̃), gw = Σ_rows gy ⊙ ŷ, gb = Σ_rows gy (LayerNorm, d = 4)."""
    d = 4
    xs, gs, ws = (norms.vector_symbols(name, d) for name in ("x", "g", "w"))
    yhat = sp.Matrix(norms.layernorm_vector(xs, EPS))
    factor = [1 + w for w in ws] if affine == "offset_weight" else ws
    g_scaled = sp.Matrix([g * f for g, f in zip(gs, factor)])
    gx = mp_function(xs + gs + ws + [EPS], list(yhat.jacobian(xs).T * g_scaled))
    gw_row = mp_function(xs + gs + [EPS], [g * y for g, y in zip(gs, yhat)])
    rows, gys = np.array(sample_rows(d, count=3, seed=11)), np.array(sample_rows(d, count=3, seed=12))
    w, b = sample_rows(d, count=2, seed=13)
    result = reference("layernorm", rows, w=w, b=b if affine == "weight_bias" else None, gy=gys, eps=1e-5,
                       affine=affine)
    ours_gx = [v for x_row, g_row in zip(rows, gys) for v in evaluate_at(gx, *x_row, *g_row, *w, 1e-5)]
    assert agrees(ours_gx, result["gx"])
    with mpmath.workdps(SPOT_DIGITS):
        per_row = [evaluate_at(gw_row, *x_row, *g_row, 1e-5) for x_row, g_row in zip(rows, gys)]
        ours_gw = [mpmath.fsum(column) for column in zip(*per_row)]
        ours_gb = [mpmath.fsum(mpmath.mpf(float(v)) for v in column) for column in gys.T]
    assert agrees(ours_gw, result["gw"])
    if affine == "weight_bias":
        assert agrees(ours_gb, result["gb"])
    # the same path rejects a VJP that forgets the weight (gx = Jᵀ gy)
    plain = mp_function(xs + gs + [EPS], list(yhat.jacobian(xs).T * sp.Matrix(gs)))
    wrong = [v for x_row, g_row in zip(rows, gys) for v in evaluate_at(plain, *x_row, *g_row, 1e-5)]
    assert not agrees(wrong, result["gx"])


def test_spot_check_rejects_a_wrong_crmsnorm_vjp():
    """A closed form without CRMSNorm's Σŷ term disagrees with the reference's VJP."""
    n = 4
    xs = norms.vector_symbols("x", n)
    alg = jac.algebra_for("crmsnorm")
    off, diagonal = jac.closed_form_entries(alg, jac.closed_form(alg, "crmsnorm", EPS, drop="crms_sum"))
    wrong = sp.Matrix(n, n, lambda a, b: alg.explicit(diagonal if a == b else off, {"x": xs}, a, b))
    row = sample_rows(n, seed=3)[1]
    worst, _ = worst_disagreement(evaluate_at(mp_function(xs + [EPS], list(wrong)), *row, 1e-6),
                                  list(reference_jacobian("crmsnorm", row, eps=1e-6, affine="none")))
    assert worst > AGREEMENT
