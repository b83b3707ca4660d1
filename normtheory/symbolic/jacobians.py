"""Jacobians of the normalizers: the closed form used by the reference, and the derivative.

Closed form (entry i of y = c/N, derivative in x_j; LN centres c = x − μ1, the others c = x):
    J_ij = r·(δ_ij − [LN] 1/d − ρ·ŷ_i·φ_j/d),   r = 1/N,   ŷ = c/N
    φ_j = ŷ_j (LN, RMSNorm),  ŷ_j + Σŷ (CRMSNorm),  sign(x_j)|ŷ_j|^(p−1) (Lp, finite p)
    ρ = 1 (eps inside),  (N/σ)^(p−1) with σ = N − eps the root (eps outside; p = 2 for RMS)
This is the transposed form of the vector-Jacobian product in normtheory/reference/formulas.py:
    gx_j = Σ_i g_i J_ij = r·(g_j − [LN] mean(g) − ρ·(Σ_i g_i ŷ_i/d)·φ_j).
The proofs compare it with the derivative of the definitions (normalizers.py), taken by sympy.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from normtheory.symbolic import normalizers as norms
from normtheory.symbolic.powersums import SumAlgebra

OPS = ("layernorm", "rmsnorm", "crmsnorm", "lpnorm")


def algebra_for(op: str, fields=("x",)) -> SumAlgebra:
    """A SumAlgebra of the width the op's kernel sees (d − 1 for CRMSNorm)."""
    width = SumAlgebra().d - 1 if op == "crmsnorm" else None
    return SumAlgebra(fields, width=width)


def forward_entry(alg: SumAlgebra, op: str, eps, eps_mode="inside", p=None):
    """Entry i of the normalizer, from its definition."""
    if op == "layernorm":
        return norms.layernorm_entry(alg, eps, eps_mode)
    if op == "rmsnorm":
        return norms.rmsnorm_entry(alg, eps, eps_mode)
    if op == "crmsnorm":
        return norms.crmsnorm_entry(alg, eps, eps_mode)
    if op == "lpnorm":
        return norms.lpnorm_entry(alg, eps, p, eps_mode)
    raise ValueError(f"unknown op {op!r}")


@dataclass
class ClosedForm:
    """The pieces of the closed-form Jacobian at generic indices i, j."""

    r: sp.Expr
    yhat_i: sp.Expr
    yhat_j: sp.Expr
    rho: sp.Expr
    phi_j: sp.Expr
    centres: bool

    def off_diagonal(self, d):
        """J_ij for i ≠ j."""
        mean_term = sp.Integer(1) / d if self.centres else 0
        return self.r * (-mean_term - self.rho * self.yhat_i * self.phi_j / d)

    def own(self):
        """The δ_ij coefficient."""
        return self.r


def closed_form(alg: SumAlgebra, op: str, eps, eps_mode="inside", p=None, *, drop=None) -> ClosedForm:
    """The closed form's pieces. `drop` removes one term, to build deliberately wrong variants:
    "mean" (LN's −1/d), "crms_sum" (CRMSNorm's Σŷ in φ), "rho" (the eps-outside factor)."""
    x = alg.i["x"]
    d = alg.d
    if op == "layernorm":
        c = x - alg.mean(x)
        mean_power, p_eff = alg.total(c**2) / d, 2
    elif op == "rmsnorm":
        c, mean_power, p_eff = x, alg.mean(x**2), 2
    elif op == "crmsnorm":
        c, mean_power, p_eff = x, (alg.total(x**2) + alg.total(x) ** 2) / d, 2
    elif op == "lpnorm":
        c, mean_power, p_eff = x, alg.mean(sp.Abs(x) ** p), p
    else:
        raise ValueError(f"unknown op {op!r}")
    root = mean_power ** (sp.Integer(1) / p_eff)
    if eps_mode == "inside":
        eps_term = eps if p_eff == 2 else eps ** (p_eff / sp.Integer(2))  # the RMS floor sqrt(eps)
        N = (mean_power + eps_term) ** (sp.Integer(1) / p_eff)
        rho = sp.Integer(1)
    else:
        N = root + eps
        rho = (N / root) ** (p_eff - 1)
    if drop == "rho":
        rho = sp.Integer(1)
    r = 1 / N
    yhat_i = c / N
    yhat_j = alg.at_j(yhat_i)
    if op in ("layernorm", "rmsnorm"):
        phi_j = yhat_j
    elif op == "crmsnorm":
        phi_j = yhat_j + (0 if drop == "crms_sum" else alg.total(yhat_i))
    else:
        xj = alg.j["x"]
        phi_j = sp.sign(xj) * sp.Abs(yhat_j) ** (p - 1)
    return ClosedForm(r, yhat_i, yhat_j, rho, phi_j, centres=(op == "layernorm" and drop != "mean"))


def derivative_entries(alg: SumAlgebra, entry_i):
    """(J_ij for i ≠ j, J_ii) of the entry, by differentiation through the sums."""
    own, through = alg.partial(entry_i, "x")
    diagonal = own + through.xreplace({alg.j[f]: alg.i[f] for f in alg.fields})
    return through, diagonal


def closed_form_entries(alg: SumAlgebra, form: ClosedForm):
    """(J_ij for i ≠ j, J_ii) of the closed form."""
    off = form.off_diagonal(alg.d)
    return off, form.own() + off.xreplace({alg.j[f]: alg.i[f] for f in alg.fields})


def vjp_from_derivative(alg: SumAlgebra, entry_i):
    """gx_j = Σ_i g_i ∂y_i/∂x_j, from the derivative (alg needs fields ("x", "g"))."""
    own, through = alg.partial(entry_i, "x")
    return alg.at_j(alg.i["g"] * own) + alg.total(alg.i["g"] * through)


def vjp_reference_formula(alg: SumAlgebra, form: ClosedForm):
    """gx_j as normtheory/reference/formulas.py states it (alg needs fields ("x", "g"))."""
    g_i, g_j = alg.i["g"], alg.j["g"]
    mean_g = alg.mean(g_i) if form.centres else 0
    weighted = alg.total(g_i * form.yhat_i) / alg.d
    return form.r * (g_j - mean_g - form.rho * weighted * form.phi_j)
