"""The Lp normalizer in closed form: definition, Jacobian, its spectral norm, norm bounds, p → ∞.

Definition (registry.py, eps inside):  y = x/N,  N = ((1/d)Σ|x_i|^p + eps^(p/2))^(1/p);
p = ∞: y = x / max(max_i|x_i|, √eps). eps enters as eps^(p/2) so that the floor of N is √eps
for every p (the naive eps inside the root would give eps^(1/p)).

Jacobian (finite p, a coordinate x_j ≠ 0 where p = 1):
    J = (I − u vᵀ)/N,   u = ŷ = x/N,   v_j = sign(x_j)|ŷ_j|^(p−1)/d,
    c = uᵀv = S/(S + eps^(p/2)),  S = (1/d)Σ|x|^p   (c = 1 at eps = 0: J x = 0).
Spectral norm: M = I − uvᵀ moves only span{u, v}; MᵀM has eigenvalue 1 with multiplicity
d − 2 and the roots of λ² − Tλ + D² with T = 2 − 2c + ‖u‖²‖v‖², D = 1 − c. At λ = 1 that
quadratic is c² − ‖u‖²‖v‖² ≤ 0 (Cauchy–Schwarz), so its larger root is ≥ 1 and
    ‖J‖₂ = sqrt((T + sqrt(T² − 4D²))/2) / N,  T² − 4D² = ‖u‖²‖v‖²(4(1 − c) + ‖u‖²‖v‖²);
at eps = 0 (c = 1):  ‖J‖₂ = ‖u‖₂‖v‖₂/N.
Bounds at eps = 0: 1 ≤ N‖J‖₂ ≤ d^|1/2 − 1/p| (Hölder; derivation in proofs/test_claim6_lp.py).
p = ∞ (unique largest |x_k| > √eps): J = (I − ŷ sign(x_k) e_kᵀ)/M, ‖J‖₂ = ‖ŷ‖₂/M; when
√eps > max|x|, y = x/√eps and J = I/√eps.

Plain functions on sequences of sympy symbols or numbers; mpmath helpers for the numeric side.
Never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import mpmath
import sympy as sp

from normtheory.symbolic import normalizers as norms


def _sym(value):
    return sp.sympify(value)


def mean_power(xs: Sequence, p) -> sp.Expr:
    """S = (1/d)Σ|x_i|^p."""
    return sum(sp.Abs(_sym(x)) ** p for x in xs) / sp.Integer(len(xs))


def normalizer(xs: Sequence, p, eps, eps_power=None) -> sp.Expr:
    """N = (S + eps^(p/2))^(1/p) (eps inside). `eps_power` replaces p/2: 1 is the naive
    placement (eps inside the root as is), the wrong variant the proofs must tell apart."""
    p = _sym(p)
    power = p / 2 if eps_power is None else _sym(eps_power)
    return (mean_power(xs, p) + _sym(eps) ** power) ** (1 / p)


def forward(xs: Sequence, p, eps, eps_power=None) -> list:
    """y = x/N for finite p (eps inside)."""
    return norms.lpnorm_vector(list(xs), eps, _sym(p), "inside", eps_power)


def rank_one_parts(xs: Sequence, p, eps):
    """(u, v, N) with J = (I − u vᵀ)/N (finite p, eps inside)."""
    p = _sym(p)
    N = normalizer(xs, p, eps)
    d = len(xs)
    u = sp.Matrix([_sym(x) / N for x in xs])
    v = sp.Matrix([sp.sign(_sym(x)) * sp.Abs(_sym(x) / N) ** (p - 1) / d for x in xs])
    return u, v, N


def jacobian(x_symbols: Sequence, p, eps) -> sp.Matrix:
    """∂y_i/∂x_j in closed form (finite p, eps inside): (I − u vᵀ)/N."""
    u, v, N = rank_one_parts(x_symbols, p, eps)
    return (sp.eye(len(x_symbols)) - u * v.T) / N


def identity_minus_rank_one_norm(u: sp.Matrix, v: sp.Matrix) -> sp.Expr:
    """‖I − uvᵀ‖₂ = sqrt((T + sqrt(T² − 4D²))/2), T = 2 − 2uᵀv + ‖u‖²‖v‖², D = 1 − uᵀv."""
    c = (u.T * v)[0]
    uv = (u.T * u)[0] * (v.T * v)[0]
    T = 2 - 2 * c + uv
    # T² − 4D² = (T − 2D)(T + 2D) = uv·(4(1 − c) + uv): the factored form has no cancellation
    # (T² and 4D² agree to ~70 digits on a row far below the √eps floor)
    return sp.sqrt((T + sp.sqrt(uv * (4 * (1 - c) + uv))) / 2)


def singular_value_quadratic(c, u_norm_sq, v_norm_sq, lam) -> sp.Expr:
    """λ² − Tλ + D²: its roots are the squared singular values of I − uvᵀ on span{u, v}."""
    T = 2 - 2 * c + u_norm_sq * v_norm_sq
    return lam**2 - T * lam + (1 - c) ** 2


def jacobian_spectral_norm(xs: Sequence, p, eps) -> sp.Expr:
    """‖J‖₂ in closed form (finite p, eps inside)."""
    u, v, N = rank_one_parts(xs, p, eps)
    return identity_minus_rank_one_norm(u, v) / N


def jacobian_spectral_norm_eps0(xs: Sequence, p) -> sp.Expr:
    """‖J‖₂ at eps = 0: ‖ŷ‖₂·‖|ŷ|^(p−1)‖₂/(d·N)."""
    u, v, N = rank_one_parts(xs, p, 0)
    return sp.sqrt((u.T * u)[0]) * sp.sqrt((v.T * v)[0]) / N


def scaled_jacobian_norm_bounds(d, p) -> tuple:
    """(1, d^|1/2 − 1/p|): the range of N·‖J‖₂ at eps = 0."""
    p = _sym(p)
    return sp.Integer(1), _sym(d) ** sp.Abs(sp.Rational(1, 2) - 1 / p)


def output_norm_bounds(d, p) -> dict:
    """At eps = 0: ‖y‖_p = d^(1/p) exactly, and ‖y‖₂ between √d and d^(1/p) (either order);
    with eps > 0 every norm of y shrinks by the factor (S/(S + eps^(p/2)))^(1/p)."""
    d, p = _sym(d), _sym(p)
    ends = (sp.sqrt(d), d ** (1 / p))
    return {"p": d ** (1 / p), "2": (sp.Min(*ends), sp.Max(*ends))}


def squeeze_factors(d, p) -> tuple:
    """(d^(−1/p), 2^(1/p)): N_p / max(max|x|, √eps) lies between them, both → 1 as p → ∞."""
    d, p = _sym(d), _sym(p)
    return d ** (-1 / p), sp.Integer(2) ** (1 / p)


# ---- p = ∞ ----------------------------------------------------------------------------------
def max_normalizer(values: Sequence, eps, naive=False):
    """max(max|x|, √eps): the p → ∞ limit of N (naive=True: max(max|x|, 1), the limit of the
    naive placement, whose eps^(1/p) → 1)."""
    floor = sp.Integer(1) if naive else sp.sqrt(_sym(eps))
    return sp.Max(*[sp.Abs(_sym(v)) for v in values], floor)


def mp_max_norm_jacobian(values: Sequence, eps) -> mpmath.matrix:
    """J at p = ∞ (mpmath, current precision), for a row with a unique largest |x_k| > √eps,
    or with √eps above every |x_i| (then J = I/√eps)."""
    x = [mpmath.mpf(v) for v in values]
    d = len(x)
    magnitudes = [abs(v) for v in x]
    top = max(magnitudes)
    floor = mpmath.sqrt(mpmath.mpf(eps))
    if floor > top:
        return mpmath.eye(d) / floor
    if magnitudes.count(top) != 1:
        raise ValueError("the largest |x_i| is not unique: J does not exist there")
    k = magnitudes.index(top)
    J = mpmath.eye(d)
    for i in range(d):
        J[i, k] -= x[i] / top * mpmath.sign(x[k])
    return J / top
