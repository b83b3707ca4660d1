"""A-priori componentwise bounds on the backward outputs gx, gw, gb of emulation.backward.

Notation as in bounds/forward.py (u, η of the accumulator; γ_k, or γ̃_k for the probabilistic kind;
h = the model's reduction depth over a row of n entries, h_R over R rows), and per row:
  n_i, E_n,i    exact normalized values and the bound on |n̂_i − n_i| (bounds/forward.py, steps 1–5;
                the backward kernel recomputes n̂ exactly as the forward does)
  r, ρ_R        exact 1/scale and the bound on |r̂/r − 1|
  g_i = gy_i·w̃_i, m = Σg/d (LayerNorm), K = Σg·n/d, φ = n (LN, RMS) or n + Σn (CRMSNorm),
  T_i = g_i − m − φ_i·K, so that the exact gx_i = r·T_i (eps inside; reference/formulas.py).
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
     none when that format is at least as precise as the accumulator.
 B7. gw_j = Σ_rows gy·n: terms p̂ = gy'·n̂ fused or rounded (llama: fl_o(gy·fl_o(n̂)), each
     rounded in the output format, n̂ first), summed over R rows in the accumulator:
     |ĝw − gw| ≤ Σ_rows E_t + γ_{h_R+1}·Σ_rows(|gy·n| + E_t) + R·η, E_t = |gy|E_n + η_in(|n| + E_n)
     (llama: E_n' = E_n + u_o(|n| + E_n) + η_o, E_t = |gy|E_n' + u_o|gy|(|n| + E_n') + η_o and
     γ_{h_R}). gb_j = Σ_rows gy: γ_{h_R}·Σ|gy| + R·η_in. Then one rounding to the weight format.
     These depend on the number of rows R (through h_R) and on Σ|gy·n|, as they must.
 B8. eps outside the root (the kernel of emulation.backward: K̂ = fl(K̂'·ρ̂), ρ̂ = fl(den̂/σ̂)):
     the exact gradient is r(g − m − φ·ρK), ρ = (σ + eps)/σ (reference/formulas.py,
     proofs/test_claim3_jacobians.py); with |ρ̂ − ρ| ≤ E_ρ (`_outside_factor_bound`),
     |fl(K̂'ρ̂) − ρK| ≤ (ρ + E_ρ)E_K' + E_ρ|K| + u(ρ + E_ρ)(|K| + E_K') + η replaces E_K, and
     ρK replaces K in B4–B6. No bound where σ ≤ E_σ (σ may be 0: not differentiable there).
     n̂, r̂ and their errors are bounds/forward.py's for eps outside; gw and gb are unchanged.
Exact quantities (m, K, T, Σgn) are evaluated in binary64; each is widened by 2^-50 times the
sum of the magnitudes it came from, which covers binary64's own rounding for n, R ≤ 2^20.
Probabilistic kind (labelled as such; it is not a guarantee). For gx every γ becomes γ̃
(bounds/forward.py) but the scalings' γ₂ (worst-case, 0 for a power-of-two d: γ̃₂ > γ₂), and E_n is
the forward's probabilistic bound. The errors of A and B also have a martingale form
(`subgaussian_sum_error`, P1's model; the smaller form is used, a union bound on the failure
probability): A's tree roundings and ĝ's own roundings (u_g·binade of each product) are one
martingale, its linear parts ĝ's flushes and (1 + w) rounding; for B,
    Σĝn̂ − Σgn = θΣgn + (1 + θ)rδμΣg + Σ[r·g·s + g·e' + ρ_g·n̂] + Σ[(1 + θ)r·g·f + θ·r·g·s + g·e + l·n̂]
(s the subtraction's rounding of ĉ, e' the product's rounding of n̂, ρ_g ĝ's rounding, f and e
flushes and η, l ĝ's other errors; proofs/test_bounds_algebra_backward.py): the shared first
two as in W (on the forward's events), the bracketed middle three increments of one martingale
with B's tree roundings — each rounding mean zero given the earlier ones, all subtractions s
first (r̂, so every e', depends on all of them), then in the tree's post-order each leaf's e'
and ρ_g and the tree's roundings, so a subtree's error is two differences of the martingale
(|w_k| ≤ |s_k| + A_k + 4B; θ·r·g·s, whose weight θ is fixed only after s, is split off as a
second-order linear term) — the rest linear (`_product_sum_subgaussian`).
Each single rounding of an element (ĝ, fl(g − m), fl(φ·K), t₂, the product by r̂) is bounded
by half an ulp of its result, u·binade(bound), instead of u relative; B5 becomes
|gx̂ − rT| ≤ r(1 + ρ_R)(E_T + e₃) + ρ_R·r|T| + e₄ + η, e₃ = u·binade(|T| + E_T),
e₄ = u·binade(r(1 + ρ_R)(|T| + E_T + e₃)) (gx̂ − rT = (T̂ − T + e₃)r(1 + θ) + θrT + e₄). S
(CRMSNorm) keeps the partial-sum form of bounds._mean_error (|w_k| ≤ |s_k(v)| + A_k(E) +
γ_h·A_k(|v| + E) by Minkowski). Sums of per-element errors that are not roundings stay linear.
gw and gb are sums over the rows, and there the rows' errors are modelled, not summed:
 P1. Assumption (Higham and Mary 2019, lifted to the row-shared errors): every rounding error
     is mean zero given the errors before it and within half an ulp of its result; the
     rsqrt's own error (|α_r| ≤ α) is one more such error — mean zero, independent of the
     other rows'. A kernel whose rsqrt errs with one sign on every row violates P1; the
     worst-case bound still covers it.
 P2. So each row's shared errors — θ_r = r̂/r − 1 and δμ_r = μ̂ − μ — are, to first order,
     martingales of that row's roundings plus α_r: sub-Gaussian, independent between rows,
     with scales sqrt(α_r² + s'²) + α_r·s' and Δ(λ = 1) (`row_shared_scales`: s' is the
     statistic's probabilistic bound at λ = 1, an upper bound on u·sqrt(Σw_k²), with the rounding
     of v̂ = fl(stat̂ + fl(eps)) one more increment of that martingale — in quadrature, not
     added; α_r ≤ α the rsqrt's error bound relative to r's own binade). The (1 + θ_r) factors and the magnitudes
     that bound increments are P4's.
 P3. gw_j − Σ_r gy·n = Σ_r [θ_r·gy·n + (1 + θ_r)r·δμ_r·gy] (one increment per row) + the
     elements' own roundings (½ulp of each result) + the tree's roundings over the rows, each
     within ½ulp(W_k) of its operand sum (`subgaussian_sum_error`: a post-order of the tree makes
     every subtree's error a difference of the martingale, so |w_k| ≤ |s_k| + 2B on the event
     that the bound B holds; B is a verified fixed point) + linear parts (flushes, η, DAZ).
     The maximal Azuma–Hoeffding inequality: |error| ≤ λ·sqrt(Σ scales²) + linear, except with
     probability 2·exp(−λ²/2) < 10⁻⁴ per gw_j (λ = 4.5) — the shared errors add in √rows,
     not rows. gb_j is P3 with exact terms. The γ̃ form stays available (the smaller is used).
 P4. The magnitudes that bound gw's increments ((1 + θ_r), |n̂| ≤ |n| + E_n, Δ) must hold for
     every row of the column, and on long bf16 sums the worst-case ones, though finite, are
     as large as n itself (γ_255 at u = 2^-8). So they are the smaller of the worst-case and
     the probabilistic forward bounds (`row_magnitudes`), the latter at a larger λ_R: the
     martingale is stopped at the first row whose forward statements fail (decided by that
     row's own forward roundings, before its increments to gw in the post-order), so
     P(gw_j fails) ≤ P(stopped martingale fails) + P(some row's forward statement fails)
     ≤ 2·8.8·10⁻⁵ (gw's own two forms, λ = 4.5) + ROW_STATEMENTS·R·2·exp(−λ_R²(1 − u)²/2),
     λ_R (`row_statement_lambda`) making the last term ROW_MAGNITUDE_BUDGET = 8·10⁻⁴:
     9.8·10⁻⁴ < FAILURE_PROBABILITY in all. λ_R grows like sqrt(2·ln R) (5.27 at R = 64).
 FAILURE_PROBABILITY bounds the per-element failure probability of every probabilistic
 backward bound by a union over the probabilistic statements it uses (gx: the forward's
 mean and statistic forms, two each, and the forms of A, B, S, two each — ten of
 2·exp(−λ²(1 − u)²/2) < 8.8·10⁻⁵ each, bf16's u included; gw: P4's split).
Unsafe rows (forward overflow, inputs not representable in the accumulator, an intermediate
that may overflow) get an infinite bound, and so do the gw/gb they enter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from normtheory.formats import FORMATS, FloatFormat
from normtheory.precision.bounds.forward import (
    LAMBDA,
    SAFETY,
    Gammas,
    _scale_roundings,
    _stat_error,
    binade,
    normalized_error,
    rsqrt_error_per_row,
    tree_partial_sums_norm,
)
from normtheory.precision.models import Model

FAILURE_PROBABILITY = 1e-3  # per element, for kind="probabilistic" (module docstring)
# gw's split of FAILURE_PROBABILITY (module docstring, P4): its own two statements at λ = LAMBDA
# (< 8.8e-5 each) and, for the magnitudes, ROW_STATEMENTS forward statements per row
ROW_STATEMENTS = 6  # bounds/forward.py: an element's forward bound uses at most six statements
ROW_MAGNITUDE_BUDGET = 8e-4
F64_SLOP = 2.0**-50  # relative to the magnitudes a binary64 evaluation summed
_MARGIN = 1.0 + 2.0**-10  # headroom below the largest finite value, as in bounds/domains.py


@dataclass(frozen=True)
class BackwardBound:
    """Bounds for the requested quantities (None for those not requested)."""

    gx: np.ndarray  # (rows, n): bound on |ĝx − gx| in the gradient format
    gw: np.ndarray  # (n,): bound on |ĝw − gw| in the weight format
    gb: np.ndarray  # (n,): bound on |ĝb − gb| in the weight format
    gx_pre: np.ndarray  # (rows, n): the same before the output rounding
    gw_pre: np.ndarray
    gb_pre: np.ndarray


def _fmt(fmt) -> FloatFormat:
    return FORMATS[fmt] if isinstance(fmt, str) else fmt


def backward_bound(op: str, x, gy, w=None, b=None, *, model: Model, eps: float, affine: str = "none",
                   grad_format="fp32", w_format=None, kind: str = "worst",
                   quantities=("gx", "gw", "gb")) -> BackwardBound:
    """Componentwise bounds on gx (rows, n), gw and gb (n,) for `model`; inf where none holds.

    Only the `quantities` asked for are computed (the others are None): gx costs most.
    """
    with np.errstate(all="ignore"):
        parts = _backward_bound(op, x, gy, w, b, model, eps, affine, _fmt(grad_format),
                                _fmt(w_format or grad_format), kind, set(quantities))
    return BackwardBound(*(None if p is None else np.where(np.isnan(p), np.inf, p) for p in parts))


def _weight_factor(affine, model, w, gy, norm, out):
    """(w̃, bound on |ĝ − g|, the part of it that is ĝ's own rounding) for step B1. Probabilistic
    kind: that rounding is bounded by half an ulp of its result, u_g·binade (bounds.binade)."""
    rows, n = gy.shape
    acc = norm.acc
    if affine == "none":
        return np.ones(n), np.full(gy.shape, norm.eta_in), np.zeros(gy.shape)
    if affine not in ("weight", "weight_bias", "offset_weight"):
        raise ValueError(f"unknown affine mode {affine!r}")
    u_g, eta_g = (out.unit_roundoff, out.min_subnormal / 2) if model.output == "llama" else (acc.unit_roundoff, norm.eta)
    if affine == "offset_weight":
        w_tilde = 1.0 + w
        u_f = FORMATS[model.offset_format or model.acc].unit_roundoff
        e_w = u_f * np.abs(w_tilde) + norm.eta
    else:
        w_tilde, e_w = w, np.zeros(n)
    aw = np.abs(w_tilde) + e_w
    agy = np.abs(gy)
    product = (agy + norm.eta_in) * aw
    rounding = u_g * (binade(product) if norm.gammas.kind == "probabilistic" else product)
    return w_tilde, agy * e_w + aw * norm.eta_in + rounding + eta_g, rounding


def _round_out(pre, magnitude, fmt, acc, model):
    if fmt.precision >= acc.precision:
        return pre
    twice = 2 if model.output == "truncate" else 1
    return pre + twice * (fmt.unit_roundoff * (magnitude + pre) + fmt.min_subnormal / 2)


def _backward_bound(op, x, gy, w, b, model, eps, affine, out, w_out, kind, wanted):
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    gy = np.asarray(gy, dtype=np.float64).reshape(x.shape)
    rows, n = x.shape
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    norm = normalized_error(op, x, model, eps, kind)
    acc, g_, eta = norm.acc, norm.gammas, norm.eta
    top = acc.max_finite / _MARGIN
    gy_not_exact = ~acc.is_representable(gy).all(axis=1)  # gy must load exactly into the accumulator
    unsafe = norm.unsafe | gy_not_exact
    product_format = out if model.output == "llama" else acc
    if affine != "none" and not product_format.is_representable(w).all():
        unsafe[:] = True  # the weight must be exact where it is multiplied
    nv, E_n = norm.n, np.where(unsafe[:, None], np.inf, norm.err_n)
    an = np.abs(nv)
    gx = gx_pre = gw = gw_pre = gb = gb_pre = None
    if "gx" in wanted:
        gx_pre, gx = _gx_bound(op, model, affine, x, w, gy, eps, norm, out, nv, an, E_n, unsafe)
    # B7: column reductions over the rows (they use n̂, not gx's intermediates)
    h_rows = model.reduction_depth(rows)
    agy = np.abs(gy)
    if "gw" in wanted:
        # every row's E_n enters gw_j: in the probabilistic kind they are P4's row-budgeted
        # magnitudes (the forward's λ = 4.5 statements of R rows would fail R times too often)
        magnitudes = row_magnitudes(op, x, model, eps) if g_.kind == "probabilistic" else None
        E_n_rows = E_n if magnitudes is None else np.where(np.isfinite(E_n), magnitudes.err_n, np.inf)
        if model.output == "llama":
            u_o, eta_o = out.unit_roundoff, out.min_subnormal / 2
            E_n_out = E_n_rows + u_o * (an + E_n_rows) + eta_o
            E_t = agy * E_n_out + u_o * agy * (an + E_n_out) + eta_o
            depth = h_rows
        else:
            E_t = agy * E_n_rows + norm.eta_in * (an + E_n_rows)
            depth = h_rows + 1
        sum_agyn = (agy * an).sum(axis=0)
        gw_pre = E_t.sum(axis=0) + g_(depth) * (sum_agyn + E_t.sum(axis=0)) + rows * eta
        if g_.kind == "probabilistic":
            scales = row_shared_scales(op, x, model, eps)
            gw_pre = np.minimum(gw_pre, _gw_probabilistic(op, model, gy, norm, scales, out, E_n, magnitudes))
        gw_pre = np.where((sum_agyn + gw_pre) * (1 + g_(depth)) > top, np.inf, gw_pre)
        gw_mag = np.abs((gy * nv).sum(axis=0)) + F64_SLOP * sum_agyn
        gw = _round_out(gw_pre, gw_mag, w_out, acc, model)
        gw = np.where(gw_mag + gw > w_out.max_finite, np.inf, gw)
    if "gb" in wanted:
        sum_agy = agy.sum(axis=0)
        gb_pre = g_(h_rows) * sum_agy + rows * norm.eta_in
        if g_.kind == "probabilistic":  # the rows' sum alone: no term errors but DAZ's shifts
            partial = subgaussian_sum_error(gy.T, np.zeros(n), np.full(gy.T.shape, norm.eta_in), model, acc,
                                            first_step_rounds=False, flush=eta if model.ftz else 0.0)
            gb_pre = np.minimum(gb_pre, partial)
        gb_pre = np.where((sum_agy * (1 + g_(h_rows)) > top) | gy_not_exact.any(), np.inf, gb_pre)
        gb_mag = np.abs(gy.sum(axis=0)) + F64_SLOP * sum_agy
        gb = _round_out(gb_pre, gb_mag, w_out, acc, model)
        gb = np.where(gb_mag + gb > w_out.max_finite, np.inf, gb)
    return tuple(None if p is None else p * SAFETY for p in (gx, gw, gb, gx_pre, gw_pre, gb_pre))


def row_shared_scales(op, x, model, eps):
    """(scale of θ_r, scale of δμ_r) per row: the sub-Gaussian scales of the row-shared errors
    (module docstring, P2). θ_r = α_r + θ'_r, α_r the rsqrt's own error (|α_r| ≤ α) and θ'_r
    what the statistic's roundings make of r (first order, a martingale of those roundings);
    the two are independent, so scale(θ) = sqrt(α² + s'²) + α·s' (the last term: the product
    (1 + θ')(1 + α) − 1), with s' the probabilistic bound of the statistic's part evaluated at
    λ = 1 (`Normalized.rho_stat`) — an upper bound on the martingale's scale u·sqrt(Σw_k²), its
    worst-case parts bounded as they are, the rounding of v̂ = fl(stat̂ + fl(eps)) one more
    increment of that martingale (in quadrature: bounds._scale_error, `scale_only`). δμ likewise:
    the probabilistic mean error at λ = 1.
    α per row: bounds.rsqrt_error_per_row at the worst-case statistic part (it always holds) —
    the rsqrt's error measured against the row's binade, below the relative α = u + 2ku
    wherever r is not just under a power of two."""
    unit = normalized_error(op, x, model, eps, "probabilistic", lam=1.0, scale_only=True)  # scales: λ = 1
    stat_part = unit.rho_stat
    worst = normalized_error(op, x, model, eps, "worst")
    alpha = rsqrt_error_per_row(model, unit.acc, worst.r, worst.rho_stat)
    return np.hypot(alpha, stat_part) + alpha * stat_part, unit.mean_err


def row_statement_lambda(rows: int, u: float) -> float:
    """λ of the forward's per-row statements inside gw's union bound (module docstring, P4):
    each of the ROW_STATEMENTS·rows statements fails with probability at most
    ROW_MAGNITUDE_BUDGET/(ROW_STATEMENTS·rows) = 2·exp(−λ²(1 − u)²/2)."""
    per_statement = ROW_MAGNITUDE_BUDGET / (ROW_STATEMENTS * max(rows, 1))
    return math.sqrt(2 * math.log(2 / per_statement)) / (1 - u)


def row_magnitudes(op, x, model, eps):
    """The magnitudes that bound gw's increments (P4): per element the smaller of the worst-case
    bound (always true) and the probabilistic one at `row_statement_lambda` (true except on the
    row's budgeted failure events) — both are fixed by the data, so the smaller holds whenever
    both statements do."""
    worst = normalized_error(op, x, model, eps, "worst")
    u = worst.acc.unit_roundoff
    prob = normalized_error(op, x, model, eps, "probabilistic", lam=row_statement_lambda(x.shape[0], u))
    return replace(worst, rho_R=np.minimum(worst.rho_R, prob.rho_R), err_n=np.minimum(worst.err_n, prob.err_n),
                   mean_err=np.minimum(worst.mean_err, prob.mean_err))


def _gw_probabilistic(op, model, gy, norm, scales, out, E_n, magnitudes):
    """Step B7, probabilistic: gw_j = Σ_rows gy·n̂ as one martingale per column (module docstring,
    P1–P3). Row r's term error gy(n̂ − n) = θ_r·gy·n + (1 + θ_r)r·δμ_r·gy (shared by the row: one
    increment of scale s_θ|gy·n| + (1 + ρ_R)r·s_μ|gy|, independent of the other rows')
    + (1 + θ_r)(n + r(δμ + f))ε·gy (the element's one or two roundings, each within half an ulp
    of its result: independent, their scales add in squares) + linear parts (flushes f, e,
    DAZ's shift of gy); llama adds the two output-format roundings of fl_o(gy·fl_o(n̂)), scale
    u_o each. The magnitudes that bound increments — (1 + ρ_R), |n| + E_n, Δ — are
    `row_magnitudes` (P4: the smaller of the worst-case and the row-budgeted probabilistic
    bounds; on long bf16 sums the worst-case E_n is finite but as large as n itself)."""
    acc, eta, r = norm.acc, norm.eta, norm.r[:, None]
    rho = magnitudes.rho_R[:, None]
    delta = magnitudes.mean_err[:, None]
    E_n = np.where(np.isfinite(E_n), magnitudes.err_n, np.inf)  # unsafe rows: no bound
    theta_scale, delta_scale = (s[:, None] for s in scales)
    agy, an = np.abs(gy), np.abs(norm.n)
    flush = norm.eta_in + (eta if op == "layernorm" else 0.0)
    shared = theta_scale * agy * an + (1 + rho) * r * delta_scale * agy
    # the element's own roundings, each within half an ulp of its result: n̂ = fl(ĉ·r̂) of size at
    # most |n| + E_n and, for LayerNorm, ĉ = fl(x − μ̂) of size at most |c| + Δ + flush (scaled by r̂)
    element = 0.5 * acc.ulp(an + E_n) * agy
    if op == "layernorm":
        element = np.hypot(element, (1 + rho) * r * 0.5 * acc.ulp(an / r + delta + flush) * agy)
    linear = (1 + rho) * r * flush * agy + eta * agy + norm.eta_in * an
    linear = np.where(np.isfinite(E_n), linear + norm.eta_in * E_n, np.inf)  # unsafe rows: no bound
    rounded_terms = not model.fma
    terms = gy * norm.n
    if model.output == "llama":
        u_o, eta_o = out.unit_roundoff, out.min_subnormal / 2
        element = np.hypot(element, u_o * agy * (an + E_n))  # fl_o(n̂), then fl_o(gy·n̂): two roundings
        element = np.hypot(element, u_o * agy * (an + E_n) * (1 + u_o))
        linear = linear + eta_o * (agy + 1)
        rounded_terms = False  # the products are rounded in the output format (above), then summed
    proxy_sq = (shared**2 + element**2).sum(axis=0)
    first_step_rounds = model.fma and model.output != "llama"
    return subgaussian_sum_error(terms.T, proxy_sq, linear.T, model, acc, first_step_rounds=first_step_rounds,
                                 rounded_terms=rounded_terms, flush=eta if model.ftz else 0.0)


def _gx_bound(op, model, affine, x, w, gy, eps, norm, out, nv, an, E_n, unsafe):
    """Steps B1–B6: (bound before the output rounding, bound in the gradient format)."""
    acc, g_ = norm.acc, norm.gammas
    u, eta, d = acc.unit_roundoff, norm.eta, norm.d
    rows, n = gy.shape
    top = acc.max_finite / _MARGIN
    h = model.reduction_depth(n)

    # B1–B3: weight factor, row sums, means
    w_tilde, E_g, R_g = _weight_factor(affine, model, w, gy, norm, out)
    probabilistic = g_.kind == "probabilistic"
    # the probabilistic kind bounds each single rounding by half an ulp of its result (u·binade of
    # a bound on it, bounds.binade) instead of u relative: the same bounded error, sharper
    half_ulp = binade if probabilistic else (lambda magnitude: magnitude)
    # the scalings by fl(1/d): worst-case γ₂ (0 when d is a power of two) — in the probabilistic
    # kind too, where γ̃₂ would be larger than γ₂ and one more statement
    gamma_scale = _scale_roundings(d, u) if probabilistic else g_(2)
    g = gy * w_tilde
    ag = np.abs(g)
    sum_ag = ag.sum(axis=1)
    sum_agn = (ag * an).sum(axis=1)
    K = (g * nv).sum(axis=1) / d
    aK = np.abs(K) + F64_SLOP * sum_agn / d
    products = ag * an + ag * E_n + E_g * (an + E_n)  # |ĝn̂| at most
    E_B = (_weighted_n_error(g, norm, u, op) + (E_g * (an + E_n)).sum(axis=1)
           + _tree_error(g * nv, products - ag * an, model, g_, u, extra_roundings=1, partial_form=not probabilistic)
           + n * eta)
    if probabilistic:
        E_B = np.minimum(E_B, _product_sum_subgaussian(op, model, g, E_g, R_g, norm, E_n) + n * eta)
    E_K = ((1 + gamma_scale) * E_B + gamma_scale * d * aK) / d + eta
    if model.eps_mode == "outside":  # B8: K̂ = fl(K̂'·ρ̂), exact ρK
        rho_f, E_rho = _outside_factor_bound(op, x, norm, model, eps)
        E_K = (rho_f + E_rho) * E_K + E_rho * aK + u * (rho_f + E_rho) * (aK + E_K) + eta
        K, aK = rho_f * K, rho_f * aK
    overflow = (products.sum(axis=1)) * (1 + g_(h + 1)) > top
    if op == "layernorm":
        m = g.sum(axis=1) / d
        am = np.abs(m) + F64_SLOP * sum_ag / d
        E_A = E_g.sum(axis=1) + _tree_error(g, E_g, model, g_, u, extra_roundings=0, partial_form=not probabilistic)
        if probabilistic:  # B2, probabilistic: ĝ's roundings and the tree's are one martingale
            E_A = np.minimum(E_A, subgaussian_sum_error(g, (R_g**2).sum(axis=1), E_g - R_g, model, acc,
                                                        first_step_rounds=False, flush=eta if model.ftz else 0.0))
        E_m = ((1 + gamma_scale) * E_A + gamma_scale * d * am) / d + eta
        overflow |= (sum_ag + E_A) * (1 + g_(h)) > top
    else:
        E_m, m, am = np.zeros(rows), np.zeros(rows), np.zeros(rows)
    if op == "crmsnorm":
        sum_an = an.sum(axis=1)
        E_S = _weighted_n_error(np.ones_like(nv), norm, u, op) + _tree_error(nv, E_n, model, g_, u, extra_roundings=0)
        phi = nv + nv.sum(axis=1, keepdims=True)
        aphi = np.abs(phi) + F64_SLOP * sum_an[:, None]
        E_phi = E_n + E_S[:, None] + u * (an + sum_an[:, None] + E_n + E_S[:, None]) + eta
    else:
        phi, aphi, E_phi = nv, an, E_n

    # B4–B5: gx before its output rounding
    subtract = u * half_ulp(ag + E_g + (am + E_m)[:, None]) if op == "layernorm" else 0.0
    u_product = 0.0 if model.fma else u
    E_T = (E_g + E_m[:, None] + aphi * E_K[:, None] + E_phi * aK[:, None] + E_phi * E_K[:, None] + subtract
           + u_product * half_ulp((aphi + E_phi) * (aK + E_K)[:, None]) + 2 * eta)
    T = g - m[:, None] - phi * K[:, None]
    aT = np.abs(T) + F64_SLOP * (ag + am[:, None] + aphi * aK[:, None])
    r = norm.r[:, None]
    rho_G = ((1 + norm.rho_R) * (1 + u) ** 2 - 1)[:, None]
    if g_.kind == "probabilistic":
        # B5 with t₂'s rounding e₃ and the product's e₄ each half an ulp of their results:
        # gx̂ − rT = (T̂ − T + e₃)·r(1 + θ) + θ·rT + e₄, |e₃| ≤ u·binade(|T| + E_T),
        # |e₄| ≤ u·binade(r(1 + ρ_R)(|T| + E_T + |e₃|)) (+ the η's, in E_T and below)
        rho = norm.rho_R[:, None]
        e3 = u * binade(aT + E_T)
        e4 = u * binade(r * (1 + rho) * (aT + E_T + e3))
        gx_pre = r * (1 + rho) * (E_T + e3) + rho * r * aT + e4 + eta
    else:
        gx_pre = r * (1 + rho_G) * E_T + rho_G * r * aT + eta
    overflow |= ((ag + E_g).max(axis=1) > top) | ((r * (aT + E_T) * (1 + rho_G)).max(axis=1) > top)
    overflow |= ((aphi + E_phi) * (aK + E_K)[:, None]).max(axis=1) > top
    bad_rows = unsafe | overflow
    gx_pre = np.where(bad_rows[:, None], np.inf, gx_pre)
    gx = _round_out(gx_pre, r * aT, out, acc, model)
    gx = np.where(r * aT + gx > out.max_finite, np.inf, gx)

    return gx_pre, gx


def _outside_factor_bound(op, x, norm, model, eps):
    """(ρ = (σ + eps)/σ, bound on |ρ̂ − ρ|) per row for eps outside the root (step B8).

    σ̂ = fl(sqrt(stat̂)) errs by E_σ = e_r + u(σ + e_r) + η, e_r = min(E_stat/σ, sqrt(E_stat))
    (bounds/forward.py's square-root difference); den = fl(σ̂ + fl(eps)) by E_den = E_σ + e_ε +
    u(den + E_σ + e_ε) + η, e_ε = u·eps + η; ρ̂ = fl(den̂/σ̂) lies in
    [(den − E_den)/(σ + E_σ), (den + E_den)/(σ − E_σ)]·(1 ± u) ± η — no bound unless σ > E_σ
    (a row whose σ may be 0: there y is not differentiable, and the kernel's ρ̂ is arbitrary)."""
    u, eta = norm.acc.unit_roundoff, norm.eta
    _, stat, err_stat = _stat_error(op, model, x, norm.d, norm.gammas, u, eta)
    err_stat = err_stat + 4 * norm.eta_in * np.sqrt(stat) + 4 * norm.eta_in**2  # DAZ (bounds/forward.py)
    sigma = np.sqrt(stat)
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


def _weighted_n_error(a, norm, u, op):
    """Bound on |Σ_i a_i(n̂_i − n_i)| per row, keeping what a row shares (step B2').

    n̂_i = r(1 + θ)·(c_i + δμ + f_i)(1 + ε_i) + e_i with one θ (|θ| ≤ ρ_R) and one δμ
    (|δμ| ≤ Δ) per row, per-element |ε_i| ≤ 2u + u² (the subtraction and the product), a
    per-element flush |f_i| ≤ η_in + η (DAZ, or an FTZ-flushed difference) and |e_i| ≤ η. So
    Σa_i(n̂_i − n_i) = θΣa_i n_i + (1 + θ)r·δμ·Σa_i + (1 + θ)r·Σa_i f_i
                      + (1 + θ)Σa_i(n_i + r(δμ + f_i))ε_i + Σa_i e_i,
    bounded with |Σa·n| and |Σa| instead of Σ|a·n| and Σ|a| for the shared errors: on a row
    whose products cancel, the rsqrt's and the mean's errors cancel with them.
    """
    rho, r = norm.rho_R, norm.r
    abs_a = np.abs(a)
    shared_n = np.abs((a * norm.n).sum(axis=1)) + F64_SLOP * (abs_a * np.abs(norm.n)).sum(axis=1)
    shared_1 = np.abs(a.sum(axis=1)) + F64_SLOP * abs_a.sum(axis=1)
    flush = norm.eta_in + (norm.eta if op == "layernorm" else 0.0)
    per_element = (np.abs(norm.n) + (r * (norm.mean_err + flush))[:, None]) * (2 * u + u * u)
    return (rho * shared_n + (1 + rho) * r * norm.mean_err * shared_1
            + (1 + rho) * r * flush * abs_a.sum(axis=1)
            + (1 + rho) * (abs_a * per_element).sum(axis=1) + norm.eta * abs_a.sum(axis=1))


def _product_sum_subgaussian(op, model, g, E_g, R_g, norm, E_n):
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
    u, eta, r = norm.acc.unit_roundoff, norm.eta, norm.r[:, None]
    rho, delta = norm.rho_R[:, None], norm.mean_err[:, None]
    ag, an = np.abs(g), np.abs(norm.n)
    flush = norm.eta_in + (eta if op == "layernorm" else 0.0)
    subtraction = r * u * binade(an / r + delta + flush) if op == "layernorm" else np.zeros_like(an)
    product = u * binade(an + E_n)
    proxy_sq = ((ag * subtraction) ** 2 + (ag * product) ** 2 + (R_g * (an + E_n)) ** 2).sum(axis=1)
    per_term = (1 + rho) * r * flush * ag + rho * ag * subtraction + eta * ag + (E_g - R_g) * (an + E_n)
    shared_n = np.abs((g * norm.n).sum(axis=1)) + F64_SLOP * (ag * an).sum(axis=1)
    shared_1 = np.abs(g.sum(axis=1)) + F64_SLOP * ag.sum(axis=1)
    shared = norm.rho_R * shared_n + (1 + norm.rho_R) * norm.r * norm.mean_err * shared_1
    # for the operands' drift every term carries its share of the shared errors, |g·n|ρ + (1 + ρ)rΔ|g|
    linear = per_term + rho * ag * an + (1 + rho) * r * delta * ag
    return subgaussian_sum_error(g * norm.n, proxy_sq, linear, model, norm.acc, first_step_rounds=model.fma,
                                 rounded_terms=not model.fma, flush=eta if model.ftz else 0.0,
                                 linear_total=shared + per_term.sum(axis=1), phases=2 if op == "layernorm" else 1)


def _tree_error(values, errors, model, g_, u, extra_roundings, partial_form=True):
    """Bound on the rounding error of the model's tree sum of computed terms t̂_i, |t̂_i − v_i| ≤
    errors_i, v the exact (signed) values, per row.

    Worst case: γ_{h+e}·Σ(|v| + errors) (e extra roundings per term: 1 for a rounded or fused
    product). Probabilistic: the partial-sum form of bounds._mean_error, with |ŵ_k| ≤ |s_k(v)| +
    A_k(errors) + γ_h·A_k(|v| + errors) by Minkowski, plus λ·u·sqrt(Σ(|v| + errors)²) for the
    products' own roundings (every term's product rounding is one more martingale step); the
    smaller of the two forms is used (a union bound on the failure probability). Without
    `partial_form` only the γ form (gx's A and B have `subgaussian_sum_error` forms instead).
    """
    h = model.reduction_depth(values.shape[1])
    magnitudes = np.abs(values) + errors
    worst_form = g_(h + extra_roundings) * magnitudes.sum(axis=1)
    if g_.kind == "worst" or not partial_form:
        return worst_form
    worst_h = Gammas(u, "worst")(h)
    partial = (tree_partial_sums_norm(values, model) + tree_partial_sums_norm(errors, model)
               + worst_h * tree_partial_sums_norm(magnitudes, model))
    if extra_roundings:
        partial = partial + np.sqrt((magnitudes**2).sum(axis=1))
    return np.minimum(worst_form, LAMBDA * u * partial)


# ---- probabilistic sums: one sub-Gaussian martingale per sum ----------------------------------

def rounding_step_sums(values: np.ndarray, model: Model, first_step_rounds: bool) -> np.ndarray:
    """(sums, steps): Σ of `values` over the terms below every rounding of the model's tree sum
    along axis 1 — the exact operand sum w_k that rounding k is applied to when the terms are
    exact. Lane steps after each lane's first (all of them when `first_step_rounds`: a fused
    product rounds already at the first step), then every butterfly combine. A lane shorter
    than the others counts its padded steps (adding 0 rounds nothing: an upper bound)."""
    rows, n = values.shape
    lanes = model.lane_count(n)
    steps = -(-n // lanes)
    padded = np.zeros((rows, steps * lanes))
    padded[:, :n] = values
    partial = np.cumsum(padded.reshape(rows, steps, lanes), axis=1)
    out = [partial[:, (0 if first_step_rounds else 1):, :].reshape(rows, -1)]
    level = partial[:, -1, :]
    width = 1 << (lanes - 1).bit_length()
    level = np.concatenate([level, np.zeros((rows, width - lanes))], axis=1)
    while level.shape[1] > 1:
        half = level.shape[1] // 2
        level = level[:, :half] + level[:, half:]
        out.append(level)
    return np.concatenate(out, axis=1)


_FIXED_POINT_ITERATIONS = 8


def subgaussian_sum_error(values, proxy_sq, linear, model, acc, *, first_step_rounds, rounded_terms=False,
                          flush=0.0, linear_total=None, phases=1):
    """Probabilistic bound on |ŝ − Σ values| per sum (row) of the model's tree sum of computed terms
    t̂_i = v_i + (martingale part) + (linear part, |·| ≤ linear_i); inf where it is not verified.

    Model (Higham and Mary's, stated in the module docstring): every error below is mean zero
    given the errors before it in a post-order of the tree (each leaf's own errors, then the
    subtree's roundings: the computed value of any subtree then differs from its exact value by
    a difference M_b − M_a of the martingale plus its linear parts), and either bounded or
    sub-Gaussian with the given scale. `proxy_sq` is Σ of the squared scales of the terms' own
    errors (the caller decides what is independent of what); a rounding applied to an operand
    sum w errs by at most half an ulp of |w| — u·2^⌊log2|w|⌋, on average 1.4 times below u|w|.
    On the event max_k |M_k| ≤ B, |w_k| ≤ |s_k| + A_k(linear) + 2B =: W_k, so with
    c_k = ½ulp(W_k) the stopped martingale has increments bounded by c_k, and the maximal
    Azuma–Hoeffding inequality gives P(max|M| ≥ λ·sqrt(proxy + Σc_k²)) ≤ 2·exp(−λ²/2). Any B
    with B ≥ λ·sqrt(proxy + Σ c_k(B)²) therefore bounds |M| with that failure probability; B is
    found by iterating that monotone map upward from 0 and verified at B(1 + 2^-8).
    `rounded_terms`: every term is rounded in the accumulator before the tree (an unfused product),
    one more increment ½ulp(|v_i| + linear_i + 2B) per term. `flush`: the absolute error of a
    result flushed to zero (FTZ: the smallest normal), added linearly for every rounding.
    `linear_total`: a bound on |Σ linear parts| sharper than Σ linear (errors a sum shares, which
    cancel with it); `linear` still bounds the operands' drift term by term. `phases`: the terms'
    errors come in that many groups that must precede one another in time (B's subtractions, on
    which r̂ and so every product rounding depends, before the products): the martingale runs
    through the groups one after the other, each group's leaves in the tree's post-order, so a
    subtree's error is one difference of the martingale per group and |w_k| ≤ |s_k| + A_k + 2·phases·B.
    """
    steps_v = rounding_step_sums(values, model, first_step_rounds)
    steps_lin = rounding_step_sums(linear, model, first_step_rounds)
    roundings = steps_v.shape[1] + (values.shape[1] if rounded_terms else 0)
    linear_total = (linear.sum(axis=1) if linear_total is None else linear_total) + roundings * flush
    base = np.abs(steps_v) + steps_lin + roundings * flush
    term_base = np.abs(values) + linear

    def half_ulp(magnitude):
        return np.where(np.isfinite(magnitude), 0.5 * acc.ulp(np.where(np.isfinite(magnitude), magnitude, 0.0)), np.inf)

    def scale(B):
        half_ulps = half_ulp(base + 2 * phases * B[:, None])
        total = proxy_sq + (half_ulps**2).sum(axis=1)
        if rounded_terms:
            total = total + (half_ulp(term_base + 2 * phases * B[:, None]) ** 2).sum(axis=1)
        return LAMBDA * np.sqrt(total)

    B = np.zeros(values.shape[0])
    for _ in range(_FIXED_POINT_ITERATIONS):
        B = np.maximum(B, scale(B))
    B = B * (1 + 2.0**-8)
    verified = scale(B) <= B
    return np.where(verified & np.isfinite(B), B + linear_total, np.inf)
