"""Steps B1–B6 and B8 of the backward derivation: the bound on gx.

Notation as in bounds/forward.py (u, η of the accumulator; γ_k, or γ̃_k for the probabilistic kind;
h = the model's reduction depth over a row of n entries), and per row:
  n_i, E_n,i    exact normalized values and the bound on |n̂_i − n_i| (bounds/normalized.py, steps 1–5;
                the backward kernel recomputes n̂ exactly as the forward does)
  r, ρ_R        exact 1/scale and the bound on |r̂/r − 1|
  g_i = gy_i·w̃_i, m = Σg/d (a centred op: LayerNorm), K = Σg·n/d, φ = n (LN, RMS) or n + Σn
  (CRMSNorm: `StatisticRule.direction_adds_row_sum`), T_i = g_i − m − φ_i·K, so that the exact
  gx_i = r·T_i (eps inside; reference/formulas.py).
Derivation (proofs/test_bounds_algebra.py checks the algebra):
 B1. Weight factor ĝ = fl(gy'·w̃̂) in a format of unit roundoff u_g (the accumulator, or the
     output format for `llama`), gy' the loaded gy (DAZ: |gy' − gy| ≤ η_in), w̃̂ = w̃ + e_w with
     |e_w| ≤ u_f|w̃| + η for (1 + w) formed in u_f, 0 otherwise:
     E_g = |gy|·|e_w| + (|w̃| + |e_w|)·η_in + u_g(|gy| + η_in)(|w̃| + |e_w|) + η_g
     (affine none: ĝ = gy', E_g = η_in).
 B2. Row sums in the tree (each term passes through at most h roundings, sums of floats are
     exact in the subnormal range, so no η): |Â − Σg| ≤ ΣE_g + γ_h·Σ(|g| + E_g) =: E_A.
     Products ĝn̂ fused or rounded first (at most h + 1 roundings, one η each):
     ĝn̂ − gn = g(n̂ − n) + (ĝ − g)n̂, and Σg(n̂ − n) keeps what a row shares (B2'):
     n̂_i = r(1 + θ)(c_i + δμ + f_i)(1 + ε_i) + e_i with one θ (|θ| ≤ ρ_R) and one δμ
     (|δμ| ≤ Δ) per row, |ε_i| ≤ 2u + u², flushes |f_i| ≤ η_in + η, |e_i| ≤ η, so
     |Σa(n̂ − n)| ≤ ρ_R|Σa·n| + (1 + ρ_R)rΔ|Σa| + (1 + ρ_R)rΣ|a||f| + (1 + ρ_R)(2u + u²)Σ|a|(|n|
     + r(Δ + |f|)) + ηΣ|a| =: W(a) — on a row whose products cancel, the rsqrt's and the mean's
     errors cancel with them. E_B = W(g) + ΣE_g(|n| + E_n) + γ_{h+1}·Σ(|gn| + E_p) + n·η,
     E_p = |g|E_n + E_g(|n| + E_n) (|ĝn̂ − gn| per term, for the tree's magnitudes).
 B3. Scaling by fl(1/d) = (1/d)(1 + δ): |fl(Â·fl(1/d)) − m| ≤ ((1 + γ₂)E_A + γ₂|Σg|)/d + η
     =: E_m, the same with B for K (E_K). CRMSNorm: |Ŝ − Σn| ≤ W(1) + γ_h·Σ(|n| + E_n) =: E_S
     and φ̂ = fl(n̂ + Ŝ): E_φ = E_n + E_S + u(|n| + Σ|n| + E_n + E_S) + η.
 B4. T̂ (before t₂'s rounding) = (ĝ − m̂)(1 + δ₁) − φ̂K̂(1 + δ₂), δ₂ = 0 under FMA, δ₁ = 0
     for RMS/CRMS (no subtraction):
     |T̂ − T| ≤ E_g + E_m + |φ|E_K + E_φ|K| + E_φE_K + u(|g| + E_g + |m| + E_m)
               + u'(|φ| + E_φ)(|K| + E_K) + 2η =: E_T  (u' = 0 under FMA, u otherwise).
 B5. gx̂ = fl(fl(T̂)·r̂) = T̂·r(1 + ρ_R)(1 + δ₃)(1 + δ₄) (+ η's, in E_T and below), so with
     ρ_G = (1 + ρ_R)(1 + u)² − 1:  |gx̂ − r·T| ≤ r(1 + ρ_G)·E_T + ρ_G·r|T| + η.
 B6. Output rounding to the gradient format: + u_o(r|T| + E) + η_o (truncate: twice that),
     none when that format is at least as precise as the accumulator (bounds/affine.py).
 B8. eps outside the root (the kernel of emulation.backward: K̂ = fl(K̂'·ρ̂), ρ̂ = fl(den̂/σ̂)):
     the exact gradient is r(g − m − φ·ρK), ρ = (σ + eps)/σ (reference/formulas.py,
     proofs/test_claim3_jacobians.py); with |ρ̂ − ρ| ≤ E_ρ (`outside_factor_bound`),
     |fl(K̂'ρ̂) − ρK| ≤ (ρ + E_ρ)E_K' + E_ρ|K| + u(ρ + E_ρ)(|K| + E_K') + η replaces E_K, and
     ρK replaces K in B4–B6. No bound where σ ≤ E_σ (σ may be 0: not differentiable there).
     n̂, r̂ and their errors are bounds/normalized.py's for eps outside; gw and gb are unchanged.
 B9. An eps floor that can pin the scale (eps inside; bounds/statistic_rules.EPS_FLOORS, an
     EpsPlacement with `branches`): where the floor is active N does not move with x, the exact
     gx = r·g (reference/formulas.py), and the kernel, which branches on its own comparison, sets
     K̂ = 0: on the rows where both provably take the floor (`Normalized.floor_rows`) K = E_K = 0
     in B4–B6, so T = g − m; on the rows at the kink (`Normalized.kink_rows`), where they may
     take different branches, the gradient jumps by r·φK and there is no bound.
Exact quantities (m, K, T, Σgn) are evaluated in binary64; each is widened by 2^-50 times the
sum of the magnitudes it came from, which covers binary64's own rounding for n, R ≤ 2^20
(toolkit/rounding.F64_SLOP).
Probabilistic kind (labelled as such; it is not a guarantee). For gx every γ becomes γ̃
(bounds/forward.py) but the scalings' γ₂ (worst-case, 0 for a power-of-two d: γ̃₂ > γ₂), and E_n is
the forward's probabilistic bound. The errors of A and B also have a martingale form
(`subgaussian_sum_error` of toolkit/sums.py, P1's model of bounds/backward_weights.py; the smaller
form is used, a union bound on the failure probability): A's tree roundings and ĝ's own roundings
(u_g·binade of each product) are one martingale, its linear parts ĝ's flushes and (1 + w)
rounding; for B,
    Σĝn̂ − Σgn = θΣgn + (1 + θ)rδμΣg + Σ[r·g·s + g·e' + ρ_g·n̂] + Σ[(1 + θ)r·g·f + θ·r·g·s + g·e + l·n̂]
(s the subtraction's rounding of ĉ, e' the product's rounding of n̂, ρ_g ĝ's rounding, f and e
flushes and η, l ĝ's other errors; proofs/test_bounds_algebra_backward.py): the shared first
two as in W (on the forward's events), the bracketed middle three increments of one martingale
with B's tree roundings — each rounding mean zero given the earlier ones, all subtractions s
first (r̂, so every e', depends on all of them), then in the tree's post-order each leaf's e'
and ρ_g and the tree's roundings, so a subtree's error is two differences of the martingale
(|w_k| ≤ |s_k| + A_k + 4B; θ·r·g·s, whose weight θ is fixed only after s, is split off as a
second-order linear term) — the rest linear (`product_sum_subgaussian`).
Each single rounding of an element (ĝ, fl(g − m), fl(φ·K), t₂, the product by r̂) is bounded
by half an ulp of its result, u·binade(bound), instead of u relative; B5 becomes
|gx̂ − rT| ≤ r(1 + ρ_R)(E_T + e₃) + ρ_R·r|T| + e₄ + η, e₃ = u·binade(|T| + E_T),
e₄ = u·binade(r(1 + ρ_R)(|T| + E_T + e₃)) (gx̂ − rT = (T̂ − T + e₃)r(1 + θ) + θrT + e₄). S
(CRMSNorm) keeps the partial-sum form of the forward's mean (|w_k| ≤ |s_k(v)| + A_k(E) +
γ_h·A_k(|v| + E) by Minkowski: toolkit/sums.minkowski_sum_error). Sums of per-element errors
that are not roundings stay linear.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normtheory.formats import FORMATS, FloatFormat
from normtheory.precision.bounds.affine import gradient_rounding_error
from normtheory.precision.bounds.normalized import Normalized, statistic_error
from normtheory.precision.bounds.statistic_rules import rule_for
from normtheory.precision.toolkit.context import BoundContext
from normtheory.precision.toolkit.rounding import F64_SLOP, HEADROOM, binade, scaling_gamma
from normtheory.precision.toolkit.sums import minkowski_sum_error, subgaussian_sum_error
from normtheory.registry import NormSpec


@dataclass(frozen=True)
class WeightFactor:
    """Step B1: w̃ and the bounds on ĝ = fl(gy'·w̃̂)."""

    w_tilde: np.ndarray  # the exact weight factor (w, 1 + w, or 1)
    err: np.ndarray  # E_g: bound on |ĝ − g|, g = gy·w̃
    rounding: np.ndarray  # R_g: the part of E_g that is ĝ's own rounding


@dataclass(frozen=True)
class RowSum:
    """A row's scaled sum (m = Σg/d, or K = Σg·n/d) per row: exact value, magnitude, error bound."""

    value: np.ndarray
    magnitude: np.ndarray  # |value| widened by F64_SLOP
    err: np.ndarray


def _identity(magnitude: np.ndarray) -> np.ndarray:
    return magnitude


def gx_bound(spec: NormSpec, norm: Normalized, *, x: np.ndarray, gy: np.ndarray, w: np.ndarray, affine: str, eps: float,
             out: FloatFormat, E_n: np.ndarray, unsafe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steps B1–B6: (bound before the output rounding, bound in the gradient format)."""
    ctx = norm.ctx
    u, eta, acc, model = ctx.u, ctx.eta, ctx.acc, ctx.model
    top = acc.max_finite / HEADROOM
    # the probabilistic kind bounds each single rounding by half an ulp of its result (u·binade of
    # a bound on it, toolkit/rounding.binade) instead of u relative: the same bounded error, sharper
    measure = binade if ctx.probabilistic else _identity
    factor = weight_factor(affine, norm, w=w, gy=gy, out=out)
    g = gy * factor.w_tilde
    ag, E_g = np.abs(g), factor.err
    K, overflow = product_mean(spec, norm, x=x, g=g, factor=factor, eps=eps, E_n=E_n)
    if norm.floor_rows is not None:  # B9: no projection on floor rows, no bound at the kink
        K = RowSum(*(np.where(norm.floor_rows, 0.0, part) for part in (K.value, K.magnitude, K.err)))
        unsafe = unsafe | norm.kink_rows
    m, overflow_m = gradient_mean(spec, norm, g=g, factor=factor)
    phi, aphi, E_phi = direction(spec, norm, E_n=E_n)
    # B4–B5: gx before its output rounding
    subtract = u * measure(ag + E_g + (m.magnitude + m.err)[:, None]) if spec.centred else 0.0
    u_product = 0.0 if model.fma else u
    aK, E_K = K.magnitude, K.err
    E_T = (E_g + m.err[:, None] + aphi * E_K[:, None] + E_phi * aK[:, None] + E_phi * E_K[:, None] + subtract
           + u_product * measure((aphi + E_phi) * (aK + E_K)[:, None]) + 2 * eta)
    T = g - m.value[:, None] - phi * K.value[:, None]
    aT = np.abs(T) + F64_SLOP * (ag + m.magnitude[:, None] + aphi * aK[:, None])
    r = norm.r[:, None]
    rho_G = ((1 + norm.rho_R) * (1 + u) ** 2 - 1)[:, None]
    if ctx.probabilistic:
        # B5 with t₂'s rounding e₃ and the product's e₄ each half an ulp of their results:
        # gx̂ − rT = (T̂ − T + e₃)·r(1 + θ) + θ·rT + e₄, |e₃| ≤ u·binade(|T| + E_T),
        # |e₄| ≤ u·binade(r(1 + ρ_R)(|T| + E_T + |e₃|)) (+ the η's, in E_T and below)
        rho = norm.rho_R[:, None]
        e3 = u * binade(aT + E_T)
        e4 = u * binade(r * (1 + rho) * (aT + E_T + e3))
        gx_pre = r * (1 + rho) * (E_T + e3) + rho * r * aT + e4 + eta
    else:
        gx_pre = r * (1 + rho_G) * E_T + rho_G * r * aT + eta
    overflow |= overflow_m
    overflow |= ((ag + E_g).max(axis=1) > top) | ((r * (aT + E_T) * (1 + rho_G)).max(axis=1) > top)
    overflow |= ((aphi + E_phi) * (aK + E_K)[:, None]).max(axis=1) > top
    gx_pre = np.where((unsafe | overflow)[:, None], np.inf, gx_pre)
    gx = gradient_rounding_error(gx_pre, r * aT, out=out, acc=acc, truncate=model.output == "truncate")  # B6
    return gx_pre, np.where(r * aT + gx > out.max_finite, np.inf, gx)


def weight_factor(affine: str, norm: Normalized, *, w: np.ndarray, gy: np.ndarray, out: FloatFormat) -> WeightFactor:
    """(w̃, bound on |ĝ − g|, the part of it that is ĝ's own rounding) for step B1. Probabilistic
    kind: that rounding is bounded by half an ulp of its result, u_g·binade (toolkit/rounding.binade)."""
    ctx = norm.ctx
    model, acc = ctx.model, ctx.acc
    rows, n = gy.shape
    if affine == "none":
        return WeightFactor(np.ones(n), np.full(gy.shape, ctx.eta_in), np.zeros(gy.shape))
    if affine not in ("weight", "weight_bias", "offset_weight"):
        raise ValueError(f"unknown affine mode {affine!r}")
    u_g, eta_g = (out.unit_roundoff, out.min_subnormal / 2) if model.output == "llama" else (acc.unit_roundoff, ctx.eta)
    if affine == "offset_weight":
        w_tilde = 1.0 + w
        u_f = FORMATS[model.offset_format or model.acc].unit_roundoff
        e_w = u_f * np.abs(w_tilde) + ctx.eta
    else:
        w_tilde, e_w = w, np.zeros(n)
    aw = np.abs(w_tilde) + e_w
    agy = np.abs(gy)
    product = (agy + ctx.eta_in) * aw
    rounding = u_g * (binade(product) if ctx.probabilistic else product)
    return WeightFactor(w_tilde, agy * e_w + aw * ctx.eta_in + rounding + eta_g, rounding)


def _scaling_gamma(norm: Normalized) -> float:
    """The scalings by fl(1/d): worst-case γ₂ (0 when d is a power of two) — in the probabilistic
    kind too, where γ̃₂ would be larger than γ₂ and one more statement."""
    ctx = norm.ctx
    return scaling_gamma(norm.d, ctx.u) if ctx.probabilistic else ctx.gamma(2)


def product_mean(spec: NormSpec, norm: Normalized, *, x: np.ndarray, g: np.ndarray, factor: WeightFactor, eps: float,
                 E_n: np.ndarray) -> tuple[RowSum, np.ndarray]:
    """Steps B2–B3 (and B8) for K = Σg·n/d: (K with its bound, rows whose products may overflow)."""
    ctx = norm.ctx
    u, eta, d, model = ctx.u, ctx.eta, norm.d, ctx.model
    n = g.shape[1]
    ag, an, E_g = np.abs(g), np.abs(norm.n), factor.err
    gamma_scale = _scaling_gamma(norm)
    K = (g * norm.n).sum(axis=1) / d
    aK = np.abs(K) + F64_SLOP * (ag * an).sum(axis=1) / d
    products = ag * an + ag * E_n + E_g * (an + E_n)  # |ĝn̂| at most
    E_B = (weighted_n_error(g, norm, spec=spec) + (E_g * (an + E_n)).sum(axis=1)
           + tree_error(g * norm.n, products - ag * an, ctx=ctx, extra_roundings=1) + n * eta)
    if ctx.probabilistic:
        E_B = np.minimum(E_B, product_sum_subgaussian(spec, norm, g=g, factor=factor, E_n=E_n) + n * eta)
    E_K = ((1 + gamma_scale) * E_B + gamma_scale * d * aK) / d + eta
    if model.eps_mode == "outside":  # B8: K̂ = fl(K̂'·ρ̂), exact ρK
        rho_f, E_rho = outside_factor_bound(spec, norm, x=x, eps=eps)
        E_K = (rho_f + E_rho) * E_K + E_rho * aK + u * (rho_f + E_rho) * (aK + E_K) + eta
        K, aK = rho_f * K, rho_f * aK
    overflow = (products.sum(axis=1)) * (1 + ctx.gamma(model.reduction_depth(n) + 1)) > ctx.acc.max_finite / HEADROOM
    return RowSum(K, aK, E_K), overflow


def gradient_mean(spec: NormSpec, norm: Normalized, *, g: np.ndarray, factor: WeightFactor) -> tuple[RowSum, np.ndarray]:
    """Steps B2–B3 for m = Σg/d (a centred op; 0 otherwise): (m with its bound, rows that may overflow)."""
    ctx = norm.ctx
    rows, n = g.shape
    if not spec.centred:
        return RowSum(np.zeros(rows), np.zeros(rows), np.zeros(rows)), np.zeros(rows, dtype=bool)
    d, E_g, R_g = norm.d, factor.err, factor.rounding
    gamma_scale = _scaling_gamma(norm)
    sum_ag = np.abs(g).sum(axis=1)
    m = g.sum(axis=1) / d
    am = np.abs(m) + F64_SLOP * sum_ag / d
    E_A = E_g.sum(axis=1) + tree_error(g, E_g, ctx=ctx, extra_roundings=0)
    if ctx.probabilistic:  # B2, probabilistic: ĝ's roundings and the tree's are one martingale
        E_A = np.minimum(E_A, subgaussian_sum_error(g, ctx=ctx, proxy_sq=(R_g**2).sum(axis=1), linear=E_g - R_g,
                                                    first_step_rounds=False))
    E_m = ((1 + gamma_scale) * E_A + gamma_scale * d * am) / d + ctx.eta
    overflow = (sum_ag + E_A) * (1 + ctx.gamma(ctx.model.reduction_depth(n))) > ctx.acc.max_finite / HEADROOM
    return RowSum(m, am, E_m), overflow


def direction(spec: NormSpec, norm: Normalized, *, E_n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(φ, |φ| widened, E_φ): n, or n + Σn when the statistic adds the row sum (B3, CRMSNorm's S)."""
    if not rule_for(spec).direction_adds_row_sum:
        return norm.n, np.abs(norm.n), E_n
    ctx = norm.ctx
    u, nv = ctx.u, norm.n
    an = np.abs(nv)
    sum_an = an.sum(axis=1)
    tree = tree_error(nv, E_n, ctx=ctx, extra_roundings=0)
    if ctx.probabilistic:  # the smaller of the two forms (a union bound)
        tree = np.minimum(tree, minkowski_sum_error(nv, E_n, ctx=ctx, rounded_terms=False))
    E_S = weighted_n_error(np.ones_like(nv), norm, spec=spec) + tree
    phi = nv + nv.sum(axis=1, keepdims=True)
    aphi = np.abs(phi) + F64_SLOP * sum_an[:, None]
    E_phi = E_n + E_S[:, None] + u * (an + sum_an[:, None] + E_n + E_S[:, None]) + ctx.eta
    return phi, aphi, E_phi


def outside_factor_bound(spec: NormSpec, norm: Normalized, *, x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(ρ = (σ + eps)/σ, bound on |ρ̂ − ρ|) per row for eps outside the root (step B8).

    σ̂ = fl(sqrt(stat̂)) errs by E_σ = e_r + u(σ + e_r) + η, e_r = min(E_stat/σ, sqrt(E_stat))
    (bounds/scale.py's square-root difference); den = fl(σ̂ + fl(eps)) by E_den = E_σ + e_ε +
    u(den + E_σ + e_ε) + η, e_ε = u·eps + η; ρ̂ = fl(den̂/σ̂) lies in
    [(den − E_den)/(σ + E_σ), (den + E_den)/(σ − E_σ)]·(1 ± u) ± η — no bound unless σ > E_σ
    (a row whose σ may be 0: there y is not differentiable, and the kernel's ρ̂ is arbitrary)."""
    ctx = norm.ctx
    u, eta = ctx.u, ctx.eta
    stat = statistic_error(spec, x, ctx)  # DAZ's shift included, as in the forward
    err_stat = stat.err
    sigma = np.sqrt(stat.value)
    err_root = np.minimum(np.where(sigma > 0, err_stat / np.where(sigma > 0, sigma, 1.0), np.inf), np.sqrt(err_stat))
    E_sigma = err_root + u * (sigma + err_root) + eta
    den = sigma + eps
    e_eps = u * eps + eta
    E_den = E_sigma + e_eps + u * (den + E_sigma + e_eps) + eta
    ok = sigma > E_sigma
    safe = np.where(ok, sigma, 1.0)
    rho = np.where(sigma > 0, den / np.where(sigma > 0, sigma, 1.0), 0.0)
    hi = (den + E_den) / np.where(ok, safe - E_sigma, 1.0)
    lo = (den - E_den) / (safe + E_sigma)
    E_rho = np.maximum(hi - rho, rho - lo) + u * hi + eta
    return rho, np.where(ok, E_rho, np.inf)


def weighted_n_error(a: np.ndarray, norm: Normalized, *, spec: NormSpec) -> np.ndarray:
    """Bound on |Σ_i a_i(n̂_i − n_i)| per row, keeping what a row shares (step B2').

    n̂_i = r(1 + θ)·(c_i + δμ + f_i)(1 + ε_i) + e_i with one θ (|θ| ≤ ρ_R) and one δμ
    (|δμ| ≤ Δ) per row, per-element |ε_i| ≤ 2u + u² (the subtraction and the product), a
    per-element flush |f_i| ≤ η_in + η (DAZ, or an FTZ-flushed difference) and |e_i| ≤ η. So
    Σa_i(n̂_i − n_i) = θΣa_i n_i + (1 + θ)r·δμ·Σa_i + (1 + θ)r·Σa_i f_i
                      + (1 + θ)Σa_i(n_i + r(δμ + f_i))ε_i + Σa_i e_i,
    bounded with |Σa·n| and |Σa| instead of Σ|a·n| and Σ|a| for the shared errors: on a row
    whose products cancel, the rsqrt's and the mean's errors cancel with them.
    """
    ctx = norm.ctx
    u = ctx.u
    rho, r = norm.rho_R, norm.r
    abs_a = np.abs(a)
    shared_n = np.abs((a * norm.n).sum(axis=1)) + F64_SLOP * (abs_a * np.abs(norm.n)).sum(axis=1)
    shared_1 = np.abs(a.sum(axis=1)) + F64_SLOP * abs_a.sum(axis=1)
    flush = ctx.eta_in + (ctx.eta if spec.centred else 0.0)
    per_element = (np.abs(norm.n) + (r * (norm.mean_err + flush))[:, None]) * (2 * u + u * u)
    return (rho * shared_n + (1 + rho) * r * norm.mean_err * shared_1
            + (1 + rho) * r * flush * abs_a.sum(axis=1)
            + (1 + rho) * (abs_a * per_element).sum(axis=1) + ctx.eta * abs_a.sum(axis=1))


def product_sum_subgaussian(spec: NormSpec, norm: Normalized, *, g: np.ndarray, factor: WeightFactor,
                            E_n: np.ndarray) -> np.ndarray:
    """Probabilistic bound on |B̂ − Σg·n| per row (step B2, probabilistic): with n̂_i =
    r(1 + θ)(c_i + δμ + f_i + s_i) + e'_i + e_i (s_i the subtraction's rounding, |s_i| ≤
    u·binade(|c_i| + Δ + |f_i|); e'_i the product's, |e'_i| ≤ u·binade(|n_i| + E_n,i); f_i, e_i the
    flushes and η) and ĝ_i = g_i + ρ_i + l_i (ρ_i ĝ's own rounding, |ρ_i| ≤ R_g,i; l_i the rest),
        Σĝn̂ − Σgn = θΣgn + (1 + θ)rδμΣg + Σ[r·g·s + g·e' + ρ·n̂] + Σ[(1 + θ)r·g·f + θ·r·g·s + g·e + l·n̂].
    The first two are the row's shared errors (bounded on the forward's events, which gx's union
    already holds); r·g·s, g·e' and ρ·n̂ are increments of one martingale with the tree's own
    roundings (P1: each rounding mean zero given the earlier ones — first every subtraction s
    (r̂, and with it every product rounding e', depends on all of them: `phases`), then, in the
    tree's post-order, each leaf's e' and ρ and the tree's roundings; θ·r·g·s is split off as a
    second-order linear term because θ is fixed after s), so `subgaussian_sum_error` bounds all
    of them with one statement — the one the partial-sum form of B held before."""
    ctx = norm.ctx
    u, eta, r, model = ctx.u, ctx.eta, norm.r[:, None], ctx.model
    E_g, R_g = factor.err, factor.rounding
    rho, delta = norm.rho_R[:, None], norm.mean_err[:, None]
    ag, an = np.abs(g), np.abs(norm.n)
    flush = ctx.eta_in + (eta if spec.centred else 0.0)
    subtraction = r * u * binade(an / r + delta + flush) if spec.centred else np.zeros_like(an)
    product = u * binade(an + E_n)
    proxy_sq = ((ag * subtraction) ** 2 + (ag * product) ** 2 + (R_g * (an + E_n)) ** 2).sum(axis=1)
    per_term = (1 + rho) * r * flush * ag + rho * ag * subtraction + eta * ag + (E_g - R_g) * (an + E_n)
    shared_n = np.abs((g * norm.n).sum(axis=1)) + F64_SLOP * (ag * an).sum(axis=1)
    shared_1 = np.abs(g.sum(axis=1)) + F64_SLOP * ag.sum(axis=1)
    shared = norm.rho_R * shared_n + (1 + norm.rho_R) * norm.r * norm.mean_err * shared_1
    # for the operands' drift every term carries its share of the shared errors, |g·n|ρ + (1 + ρ)rΔ|g|
    linear = per_term + rho * ag * an + (1 + rho) * r * delta * ag
    return subgaussian_sum_error(g * norm.n, ctx=ctx, proxy_sq=proxy_sq, linear=linear, first_step_rounds=model.fma,
                                 rounded_terms=not model.fma, linear_total=shared + per_term.sum(axis=1),
                                 phases=2 if spec.centred else 1)


def tree_error(values: np.ndarray, errors: np.ndarray, *, ctx: BoundContext, extra_roundings: int) -> np.ndarray:
    """Worst-case form of the rounding error of the model's tree sum of computed terms t̂_i,
    |t̂_i − v_i| ≤ errors_i, v the exact (signed) values, per row: γ_{h+e}·Σ(|v| + errors)
    (e extra roundings per term: 1 for a rounded or fused product; γ̃ in the probabilistic kind).
    gx's A and B have `subgaussian_sum_error` forms beside it, CRMSNorm's S the Minkowski form
    (`direction`)."""
    h = ctx.model.reduction_depth(values.shape[1])
    magnitudes = np.abs(values) + errors
    return ctx.gamma(h + extra_roundings) * magnitudes.sum(axis=1)
