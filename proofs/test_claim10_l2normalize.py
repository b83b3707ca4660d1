"""Claim 10: L2 normalisation, y = x / max(‖x‖₂, eps) (torch.nn.functional.normalize, p = 2,
over the last dimension; registry op `l2normalize`).

Above the floor (‖x‖₂ ≥ eps), with N = ‖x‖₂ = sqrt(S), S = Σx²:
 (a) ‖y‖₂ = 1, and y = RMSNorm(x; eps = 0)/√d (‖x‖₂ = √d·rms(x): the RMS scale relation);
 (b) scale invariance: y(αx) = y(x) for α > 0 (while ‖αx‖₂ ≥ eps too);
 (c) the Jacobian is J = (I − yyᵀ)/N, so the VJP is gx = (g − y·(yᵀg))/N, and yᵀgx = 0.
Below the floor (Σx² < eps²) N = eps does not move with x: y = x/eps, gx = g/eps (no projection),
‖y‖₂ = ‖x‖₂/eps < 1 and y(αx) = α·y(x). At the tie ‖x‖₂ = eps torch's clamp_min passes the
gradient through the norm (its backward is grad where x >= min), so the reference's VJP there is
(c)'s — checked against the reference at an exact tie, x = (3, 4)·2^-20, eps = 5·2^-20.

General d (powersums.py): S is one sum symbol; sympy differentiates the definitions through it
and the differences reduce to 0. Numeric: sympy's Jacobian of the explicit definition at d = 2,
3, 5 (a branch per row, chosen by an exact rational comparison of Σx² with eps²) against
normtheory.reference.evaluate at ≥ 100 digits, above, below and at the floor. Each claim comes with
a wrong variant that is refuted or rejected: the floor branch treated like the norm branch (norm
1, scale invariance, a projection), RMSNorm's 1/d kept in the projection, eps under the root
(sqrt(S + eps²), the "add" placement) instead of a floor, and the floor's g/eps at the tie.
"""

import mpmath
import numpy as np
import pytest
import sympy as sp

from normtheory.symbolic.identities import decide
from normtheory.symbolic.jacobians import derivative_entries, vjp_from_derivative
from normtheory.symbolic.powersums import SumAlgebra
from normtheory.symbolic.spotcheck import agrees, evaluate_at, mp_function, reference, worst_disagreement

EPS = sp.Symbol("epsilon", positive=True)
ALPHA = sp.Symbol("alpha", positive=True)
WITNESS = [3, -1, 2, 5]  # ‖x‖₂ = √39 ≈ 6.2
WITNESS_G = [1, 2, -2, 1]


def norm_entry(alg: SumAlgebra, scale=1):
    """Entry i of x/‖x‖₂ for the row scale·x (the branch above the floor)."""
    x = alg.i["x"]
    return scale * x / sp.sqrt(alg.total((scale * x) ** 2))


def floor_entry(alg: SumAlgebra, scale=1):
    """Entry i of x/eps (the branch below the floor)."""
    return scale * alg.i["x"] / EPS


def points(alg: SumAlgebra, eps) -> list[dict]:
    values = {"x": WITNESS, "g": WITNESS_G} if "g" in alg.fields else {"x": WITNESS}
    return [{**alg.instance(values, i=0, j=1), EPS: sp.sympify(eps), ALPHA: sp.Rational(3, 2)}]


# ---- (a) the norm of y and the RMS scale relation ---------------------------------------------
def test_unit_norm_above_the_floor_for_general_d():
    alg = SumAlgebra()
    verdict = decide(alg.total(norm_entry(alg) ** 2), 1, points(alg, 1))
    assert verdict.proven, verdict


@pytest.mark.parametrize("wrong", ["floor_has_unit_norm", "rms_norm_of_y"])
def test_wrong_norms_are_refuted(wrong):
    alg = SumAlgebra()
    if wrong == "floor_has_unit_norm":  # below the floor ‖y‖² = S/eps², not 1 (witness: eps = 20 > √39)
        verdict = decide(alg.total(floor_entry(alg) ** 2), 1, points(alg, 20))
    else:  # RMSNorm's ‖y‖² = d does not carry over: the divisor is 1
        verdict = decide(alg.total(norm_entry(alg) ** 2), alg.d, points(alg, 1))
    assert verdict.refuted, verdict


def test_l2normalize_is_rmsnorm_without_eps_over_sqrt_d_for_general_d():
    alg = SumAlgebra()
    rms = alg.i["x"] / sp.sqrt(alg.mean(alg.i["x"] ** 2))
    verdict = decide(norm_entry(alg), rms / sp.sqrt(alg.d), points(alg, 1))
    assert verdict.proven, verdict


def test_eps_under_the_root_is_not_the_floor():
    """The "add" placement sqrt(S + eps²) differs from the max floor above it (witness ‖x‖ > eps)."""
    alg = SumAlgebra()
    added = alg.i["x"] / sp.sqrt(alg.total(alg.i["x"] ** 2) + EPS**2)
    verdict = decide(added, norm_entry(alg), points(alg, 1))
    assert verdict.refuted, verdict


# ---- (b) scale invariance -----------------------------------------------------------------------
def test_scale_invariance_above_the_floor_for_general_d():
    alg = SumAlgebra()
    verdict = decide(norm_entry(alg, ALPHA), norm_entry(alg), points(alg, 1))
    assert verdict.proven, verdict


@pytest.mark.parametrize("wrong", ["floor", "eps_outside"])
def test_scale_invariance_fails_where_eps_acts(wrong):
    alg = SumAlgebra()
    if wrong == "floor":  # x/eps is homogeneous of degree 1, not 0
        verdict = decide(floor_entry(alg, ALPHA), floor_entry(alg), points(alg, 20))
    else:  # x/(‖x‖ + eps): eps > 0 breaks it
        def outside(scale):
            x = alg.i["x"]
            return scale * x / (sp.sqrt(alg.total((scale * x) ** 2)) + EPS)
        verdict = decide(outside(ALPHA), outside(1), points(alg, 1))
    assert verdict.refuted, verdict


# ---- (c) the Jacobian and the VJP -----------------------------------------------------------------
def projection_vjp(alg: SumAlgebra, divisor=1):
    """gx_j = (g_j − y_j·Σ g_i y_i/divisor)/N: divisor 1 is the claim, d is RMSNorm's (wrong here)."""
    y_i = norm_entry(alg)
    N = sp.sqrt(alg.total(alg.i["x"] ** 2))
    return (alg.j["g"] - alg.at_j(y_i) * alg.total(alg.i["g"] * y_i) / divisor) / N


def test_jacobian_is_the_scaled_projection_for_general_d():
    alg = SumAlgebra()
    y_i = norm_entry(alg)
    N = sp.sqrt(alg.total(alg.i["x"] ** 2))
    off, diagonal = derivative_entries(alg, y_i)
    verdict = decide([off, diagonal], [-y_i * alg.at_j(y_i) / N, (1 - y_i**2) / N], points(alg, 1))
    assert verdict.proven, verdict


def test_vjp_is_the_projected_gradient_over_the_norm_for_general_d():
    alg = SumAlgebra(("x", "g"))
    verdict = decide(vjp_from_derivative(alg, norm_entry(alg)), projection_vjp(alg), points(alg, 1))
    assert verdict.proven, verdict


def test_vjp_below_the_floor_is_g_over_eps_for_general_d():
    alg = SumAlgebra(("x", "g"))
    verdict = decide(vjp_from_derivative(alg, floor_entry(alg)), alg.j["g"] / EPS, points(alg, 20))
    assert verdict.proven, verdict


def test_gradient_is_orthogonal_to_y_for_general_d():
    alg = SumAlgebra(("x", "g"))
    gx_i = projection_vjp(alg).xreplace({alg.j["g"]: alg.i["g"], alg.j["x"]: alg.i["x"]})
    verdict = decide(alg.total(norm_entry(alg) * gx_i), 0, points(alg, 1))
    assert verdict.proven, verdict


@pytest.mark.parametrize("wrong", ["rms_divisor", "projection_on_the_floor"])
def test_wrong_vjps_are_refuted(wrong):
    alg = SumAlgebra(("x", "g"))
    if wrong == "rms_divisor":
        verdict = decide(vjp_from_derivative(alg, norm_entry(alg)), projection_vjp(alg, divisor=alg.d), points(alg, 1))
    else:  # the norm branch's projection used where the floor is active
        N = sp.sqrt(alg.total(alg.i["x"] ** 2))
        wrong_form = projection_vjp(alg) * N / EPS
        verdict = decide(vjp_from_derivative(alg, floor_entry(alg)), wrong_form, points(alg, 20))
    assert verdict.refuted, verdict


# ---- numeric: sympy's Jacobian of the explicit definition against the reference -------------------
SPOT_ROWS = [  # (x, eps, which branch the exact comparison must pick)
    ([3.0, -1.0, 2.0, 5.0, 0.5], 1e-12, "norm"),
    ([1.5, -2.25], 0.25, "norm"),
    ([2.0**-30, -3 * 2.0**-31, 2.0**-29], 1e-6, "floor"),
    ([3 * 2.0**-20, 4 * 2.0**-20], 5 * 2.0**-20, "tie"),  # ‖x‖₂ = eps exactly: torch's gradient is the norm's
]


def explicit_definition(row, eps, *, tie_rule="norm"):
    """(y, gx) as sympy expressions of symbols x_k, g_k for the row's branch: N = sqrt(Σx²) where
    Σx² ≥ eps² (`tie_rule` "floor" moves the tie to the floor: the wrong variant), eps below."""
    d = len(row)
    X = sp.Matrix(sp.symbols(f"x0:{d}", real=True))
    G = sp.Matrix(sp.symbols(f"g0:{d}", real=True))
    square_sum = sum((sp.Rational(v) ** 2 for v in row), sp.Integer(0))
    eps_sq = sp.Rational(eps) ** 2
    on_floor = square_sum < eps_sq or (tie_rule == "floor" and square_sum == eps_sq)
    N = sp.Rational(eps) if on_floor else sp.sqrt(sum(v**2 for v in X))
    Y = X / N
    gx = Y.jacobian(X).T * G
    return list(X) + list(G), Y, gx, on_floor


@pytest.mark.parametrize(("row", "eps", "branch"), SPOT_ROWS)
def test_reference_equals_the_explicit_definition_at_100_digits(row, eps, branch):
    arguments, Y, gx, on_floor = explicit_definition(row, eps)
    assert on_floor == (branch == "floor")
    g = np.linspace(-1.0, 2.0, len(row))
    ours = reference("l2normalize", np.array([row]), gy=np.array([g]), eps=eps)
    expected_y = evaluate_at(mp_function(arguments, Y), *row, *g)
    expected_gx = evaluate_at(mp_function(arguments, gx), *row, *g)
    assert agrees(ours["y"], expected_y), worst_disagreement(ours["y"], expected_y)
    assert agrees(ours["gx"], expected_gx), worst_disagreement(ours["gx"], expected_gx)
    if branch != "floor":  # ‖y‖₂ = 1 on the reference's own output, at the tie too
        with mpmath.workdps(110):
            assert abs(mpmath.fsum(v**2 for v in ours["y"]) - 1) < mpmath.mpf(10) ** -100


def test_floor_gradient_at_the_tie_is_rejected_by_the_reference():
    """The other convention at ‖x‖₂ = eps (gx = g/eps, the floor's) disagrees with the reference."""
    row, eps, _ = SPOT_ROWS[-1]
    arguments, _, gx, on_floor = explicit_definition(row, eps, tie_rule="floor")
    assert on_floor
    g = np.linspace(-1.0, 2.0, len(row))
    ours = reference("l2normalize", np.array([row]), gy=np.array([g]), eps=eps)
    wrong = evaluate_at(mp_function(arguments, gx), *row, *g)
    worst, _ = worst_disagreement(ours["gx"], wrong)
    assert worst > mpmath.mpf(10) ** -3, worst
