"""Jacobian, spectral norm and conditioning of the Lp normalizer, in closed form.

y = x / N,  N = ((1/d)Σ|x_i|^p + eps^(p/2))^(1/p)   (registry.py; p = inf: N = max(max|x|, √eps)).

Jacobian. ∂N/∂x_j = sign(x_j)|x_j|^(p−1) / (d·N^(p−1)), so
    J = ∂y/∂x = (1/N)·(I − y·vᵀ),   v_j = sign(y_j)|y_j|^(p−1) / d.
The weight (y·w) multiplies J by diag(w) on the left; it is left out here.
With φ = eps^(p/2)/N^p ∈ (0, 1] (the floor's share of N^p) one has vᵀy = 1 − φ. So M = I − y vᵀ
is the identity on the (d − 2)-dimensional complement of span{y, v} and, on that span, has
singular values σ₊ ≥ σ₋ with σ₊σ₋ = |det M| = φ and σ₊² + σ₋² = 2φ + ‖y‖²‖v‖²:
    σ±² = (S ± sqrt(S² − 4φ²)) / 2,   S = 2φ + ‖y‖²‖v‖².
Spectral norm ‖J‖₂ = max(σ₊, 1)/N. The relative (normwise) condition number of x ↦ y is
κ_rel = ‖J‖‖x‖/‖y‖ = max(σ₊, 1), independent of the scale of x. Without eps (φ = 0) the
radial direction is annihilated (J·x = 0: scale invariance) and σ₋ = 0, so the ratio
σ_max/σ_min of J is infinite; with eps it is max(σ₊, 1)/min(σ₋, 1).
Cauchy–Schwarz gives ‖y‖²‖v‖² ≥ (vᵀy)² = (1 − φ)²; equality holds iff |y| is constant on its
support or p = 2, so RMSNorm (p = 2) has κ_rel = 1 exactly and every other p has κ_rel ≥ 1.
At eps = 0, κ_rel² = m₂·m_{2p−2}/m_p² with m_k = mean|x|^k: for Gaussian rows and large d this
tends to M₂·M_{2p−2}/M_p², M_k = E|g|^k = 2^(k/2)Γ((k+1)/2)/√π (π/2 at p = 1, 3π/8 at p = 3,
5/3 at p = 4, 135135/11025 at p = 8), while at p = inf, v = sign(y_{j*})·e_{j*} and
κ_rel = ‖x‖₂/‖x‖∞, which grows like sqrt(d / (2 ln d)) for Gaussian rows.

Near x_j = 0 (1 ≤ p < 2). p = 1: v_j = sign(y_j)/d jumps by 2/d as x_j crosses 0, so column j
of J jumps by (2/(d·N))·y (norm 2‖y‖/(d·N)): y is not differentiable there.
1 < p < 2: J is continuous (|x_j|^(p−1) → 0) but only Hölder of order p − 1, and
∂²N/∂x_j² = (p − 1)|x_j|^(p−2)/(d·N^(p−1)) − (p − 1)·x_j^(2p−2)/(d²·N^(2p−1)) diverges like
|x_j|^(p−2): an unbounded second derivative at every zero coordinate. p ≥ 2: C² at 0.
The eps floor does not help here: it smooths N near x = 0 (the whole row), not near x_j = 0.

eps as x → 0: N → √eps and J → I/√eps; the normalizer becomes the linear map x/√eps, and
‖J‖₂ ≤ max(σ₊, 1)/√eps everywhere (N ≥ √eps).
p → ∞: for fixed x, d^(−1/p)·max|x| ≤ N_p and N_p ≤ 2^(1/p)·max(max|x|, √eps), so
N_p → max(max|x|, √eps) with relative error O(ln(2d)/p): the max-norm normalizer.
"""

from __future__ import annotations

import math

import numpy as np


def power_mean_norm(x, p: float, eps: float) -> np.ndarray:
    """N per row, computed with the row maximum factored out (no overflow for any float64 x)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    top = np.abs(x).max(axis=1)
    floor_root = math.sqrt(eps)
    if math.isinf(p):
        return np.maximum(top, floor_root)
    K = np.maximum(top, floor_root)
    K = np.where(K > 0, K, 1.0)
    with np.errstate(under="ignore"):
        t = (np.abs(x) / K[:, None]) ** p
        return K * (t.mean(axis=1) + (floor_root / K) ** p) ** (1 / p)


def _y_v_phi(x, p, eps):
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    d = x.shape[1]
    N = power_mean_norm(x, p, eps)
    y = x / N[:, None]
    if math.isinf(p):
        top = np.abs(x).max(axis=1)
        active = top >= math.sqrt(eps)  # the max, not the floor, sets N
        at_max = np.argmax(np.abs(x), axis=1)
        v = np.zeros_like(x)
        v[np.arange(len(x)), at_max] = np.sign(x[np.arange(len(x)), at_max]) * active
        phi = np.where(active, 0.0, 1.0)
        return y, v, phi, N
    v = np.sign(y) * np.abs(y) ** (p - 1) / d
    phi = 1.0 - (np.abs(y) ** p).mean(axis=1)
    return y, v, np.clip(phi, 0.0, 1.0), N


def jacobian(x, p: float, eps: float) -> np.ndarray:
    """∂y/∂x for one row x (shape (d,)), closed form (1/N)(I − y vᵀ)."""
    y, v, _, N = _y_v_phi(np.asarray(x, dtype=np.float64).reshape(1, -1), p, eps)
    return (np.eye(y.shape[1]) - np.outer(y[0], v[0])) / N[0]


def rank_two_singular_values(x, p: float, eps: float):
    """(σ₊, σ₋, N) per row: the singular values of I − y vᵀ on span{y, v} (all others are 1)."""
    y, v, phi, N = _y_v_phi(x, p, eps)
    A = (y * y).sum(axis=1) * (v * v).sum(axis=1)
    S = 2 * phi + A
    root = np.sqrt(A * (A + 4 * phi))  # = sqrt(S² − 4φ²) without its cancellation when A ≪ φ
    upper = np.sqrt((S + root) / 2)
    lower = np.where(upper > 0, phi / np.where(upper > 0, upper, 1.0), 0.0)  # σ₊σ₋ = φ
    return upper, lower, N


def spectral_norm(x, p: float, eps: float) -> np.ndarray:
    upper, _, N = rank_two_singular_values(x, p, eps)
    return np.maximum(upper, 1.0) / N


def relative_condition(x, p: float, eps: float) -> np.ndarray:
    """κ_rel = ‖J‖‖x‖/‖y‖ = max(σ₊, 1): how much a relative perturbation of x is amplified in y."""
    upper, _, _ = rank_two_singular_values(x, p, eps)
    return np.maximum(upper, 1.0)


def jacobian_condition(x, p: float, eps: float) -> np.ndarray:
    """σ_max(J)/σ_min(J) (inf at eps = 0, where J annihilates x)."""
    upper, lower, _ = rank_two_singular_values(x, p, eps)
    with np.errstate(divide="ignore"):
        return np.maximum(upper, 1.0) / np.minimum(lower, 1.0)


def gaussian_abs_moment(k: float) -> float:
    """E|g|^k for g ~ N(0, 1)."""
    return 2 ** (k / 2) * math.gamma((k + 1) / 2) / math.sqrt(math.pi)


def gaussian_condition_limit(p: float, d: int | None = None) -> float:
    """κ_rel of a Gaussian row as d → ∞ (eps = 0): sqrt(M₂M_{2p−2})/M_p. p = inf has no finite
    limit; with d given it returns the leading-order growth sqrt(d / (2 ln d))."""
    if math.isinf(p):
        if d is None:
            return math.inf
        return math.sqrt(d / (2 * math.log(d)))
    return math.sqrt(gaussian_abs_moment(2) * gaussian_abs_moment(2 * p - 2)) / gaussian_abs_moment(p)


def column_jump_at_zero(x, j: int, p: float, eps: float) -> float:
    """‖J[:, j](x_j → 0+) − J[:, j](x_j → 0−)‖₂: 2‖y‖/(d·N) at p = 1 (y, N at x_j = 0), 0 for p > 1."""
    x = np.array(x, dtype=np.float64)
    x[j] = 0.0
    if p != 1:
        return 0.0
    N = power_mean_norm(x, p, eps)[0]
    return 2 * float(np.linalg.norm(x / N)) / (x.size * N)


def norm_second_derivative(x, j: int, p: float, eps: float) -> float:
    """∂²N/∂x_j² at x (x_j ≠ 0 when p < 2): diverges like |x_j|^(p−2) as x_j → 0 for 1 < p < 2."""
    x = np.asarray(x, dtype=np.float64)
    d = x.size
    N = power_mean_norm(x, p, eps)[0]
    a = abs(x[j])
    return (p - 1) * a ** (p - 2) / (d * N ** (p - 1)) - (p - 1) * a ** (2 * p - 2) / (d * d * N ** (2 * p - 1))


def max_norm_gap_bounds(x, p: float, eps: float):
    """(lower, upper) bounds on N_p / N_inf: d^(−1/p)·max|x|/N_inf and 2^(1/p)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    d = x.shape[1]
    n_inf = power_mean_norm(x, math.inf, eps)
    return d ** (-1 / p) * np.abs(x).max(axis=1) / n_inf, np.full(len(x), 2 ** (1 / p))
