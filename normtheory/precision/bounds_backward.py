"""A-priori componentwise bounds on the backward outputs gx, gw, gb of emulate_backward.

Notation as in bounds.py (u, η of the accumulator; γ_k, or γ̃_k for the probabilistic kind;
h = the model's reduction depth over a row of n entries, h_R over R rows), and per row:
  n_i, E_n,i    exact normalized values and the bound on |n̂_i − n_i| (bounds.py, steps 1–5;
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
     Products ĝn̂ fused or rounded first: at most h + 1 roundings, one η each:
     |B̂ − Σgn| ≤ ΣE_p + γ_{h+1}·Σ(|gn| + E_p) + n·η =: E_B, E_p = |g|E_n + E_g|n| + E_gE_n.
 B3. Scaling by fl(1/d) = (1/d)(1 + δ): |fl(Â·fl(1/d)) − m| ≤ ((1 + γ₂)E_A + γ₂Σ|g|)/d + η
     =: E_m, the same with B for K (E_K). CRMSNorm: |Ŝ − Σn| ≤ ΣE_n + γ_h·Σ(|n| + E_n) =: E_S
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
Exact quantities (m, K, T, Σgn) are evaluated in binary64; each is widened by 2^-50 times the
sum of the magnitudes it came from, which covers binary64's own rounding for n, R ≤ 2^20.
Probabilistic kind: every γ becomes γ̃ (bounds.py); E_n is the forward's probabilistic bound;
the sums of per-element error bounds stay linear (they are not independent: r̂'s error is
shared by a row). Unsafe rows (forward overflow, inputs not representable in the accumulator,
an intermediate that may overflow) get an infinite bound, and so do the gw/gb they enter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normtheory.formats import FORMATS, FloatFormat
from normtheory.precision.bounds import SAFETY, normalized_error
from normtheory.precision.models import Model

F64_SLOP = 2.0**-50  # relative to the magnitudes a binary64 evaluation summed
_MARGIN = 1.0 + 2.0**-10  # headroom below the largest finite value, as in domains.py


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
    if model.eps_mode != "inside":
        raise ValueError(f"model {model.name!r}: backward bounds assume eps inside the root")
    with np.errstate(all="ignore"):
        parts = _backward_bound(op, x, gy, w, b, model, eps, affine, _fmt(grad_format),
                                _fmt(w_format or grad_format), kind, set(quantities))
    return BackwardBound(*(None if p is None else np.where(np.isnan(p), np.inf, p) for p in parts))


def _weight_factor(affine, model, w, gy, norm, out):
    """(w̃, bound on |ĝ − g|) for step B1."""
    rows, n = gy.shape
    acc = norm.acc
    if affine == "none":
        return np.ones(n), np.full(gy.shape, norm.eta_in)
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
    return w_tilde, agy * e_w + aw * norm.eta_in + u_g * (agy + norm.eta_in) * aw + eta_g


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
        gx_pre, gx = _gx_bound(op, model, affine, w, gy, norm, out, nv, an, E_n, unsafe)
    # B7: column reductions over the rows (they use n̂, not gx's intermediates)
    h_rows = model.reduction_depth(rows)
    agy = np.abs(gy)
    if "gw" in wanted:
        if model.output == "llama":
            u_o, eta_o = out.unit_roundoff, out.min_subnormal / 2
            E_n_out = E_n + u_o * (an + E_n) + eta_o
            E_t = agy * E_n_out + u_o * agy * (an + E_n_out) + eta_o
            depth = h_rows
        else:
            E_t = agy * E_n + norm.eta_in * (an + E_n)
            depth = h_rows + 1
        sum_agyn = (agy * an).sum(axis=0)
        gw_pre = E_t.sum(axis=0) + g_(depth) * (sum_agyn + E_t.sum(axis=0)) + rows * eta
        gw_pre = np.where((sum_agyn + gw_pre) * (1 + g_(depth)) > top, np.inf, gw_pre)
        gw_mag = np.abs((gy * nv).sum(axis=0)) + F64_SLOP * sum_agyn
        gw = _round_out(gw_pre, gw_mag, w_out, acc, model)
        gw = np.where(gw_mag + gw > w_out.max_finite, np.inf, gw)
    if "gb" in wanted:
        sum_agy = agy.sum(axis=0)
        gb_pre = g_(h_rows) * sum_agy + rows * norm.eta_in
        gb_pre = np.where((sum_agy * (1 + g_(h_rows)) > top) | gy_not_exact.any(), np.inf, gb_pre)
        gb_mag = np.abs(gy.sum(axis=0)) + F64_SLOP * sum_agy
        gb = _round_out(gb_pre, gb_mag, w_out, acc, model)
        gb = np.where(gb_mag + gb > w_out.max_finite, np.inf, gb)
    return tuple(None if p is None else p * SAFETY for p in (gx, gw, gb, gx_pre, gw_pre, gb_pre))


def _gx_bound(op, model, affine, w, gy, norm, out, nv, an, E_n, unsafe):
    """Steps B1–B6: (bound before the output rounding, bound in the gradient format)."""
    acc, g_ = norm.acc, norm.gammas
    u, eta, d = acc.unit_roundoff, norm.eta, norm.d
    rows, n = gy.shape
    top = acc.max_finite / _MARGIN
    h = model.reduction_depth(n)

    # B1–B3: weight factor, row sums, means
    w_tilde, E_g = _weight_factor(affine, model, w, gy, norm, out)
    g = gy * w_tilde
    ag = np.abs(g)
    sum_ag = ag.sum(axis=1)
    E_p = ag * E_n + E_g * an + E_g * E_n
    sum_agn = (ag * an).sum(axis=1)
    E_B = E_p.sum(axis=1) + g_(h + 1) * (sum_agn + E_p.sum(axis=1)) + n * eta
    E_K = ((1 + g_(2)) * E_B + g_(2) * sum_agn) / d + eta
    K = (g * nv).sum(axis=1) / d
    aK = np.abs(K) + F64_SLOP * sum_agn / d
    overflow = (sum_agn + E_B) * (1 + g_(h + 1)) > top
    if op == "layernorm":
        E_A = E_g.sum(axis=1) + g_(h) * (sum_ag + E_g.sum(axis=1))
        E_m = ((1 + g_(2)) * E_A + g_(2) * sum_ag) / d + eta
        m = g.sum(axis=1) / d
        am = np.abs(m) + F64_SLOP * sum_ag / d
        overflow |= (sum_ag + E_A) * (1 + g_(h)) > top
    else:
        E_m, m, am = np.zeros(rows), np.zeros(rows), np.zeros(rows)
    if op == "crmsnorm":
        sum_an = an.sum(axis=1)
        E_S = E_n.sum(axis=1) + g_(h) * (sum_an + E_n.sum(axis=1))
        phi = nv + nv.sum(axis=1, keepdims=True)
        aphi = np.abs(phi) + F64_SLOP * sum_an[:, None]
        E_phi = E_n + E_S[:, None] + u * (an + sum_an[:, None] + E_n + E_S[:, None]) + eta
    else:
        phi, aphi, E_phi = nv, an, E_n

    # B4–B5: gx before its output rounding
    subtract = u * (ag + E_g + (am + E_m)[:, None]) if op == "layernorm" else 0.0
    u_product = 0.0 if model.fma else u
    E_T = (E_g + E_m[:, None] + aphi * E_K[:, None] + E_phi * aK[:, None] + E_phi * E_K[:, None] + subtract
           + u_product * (aphi + E_phi) * (aK + E_K)[:, None] + 2 * eta)
    T = g - m[:, None] - phi * K[:, None]
    aT = np.abs(T) + F64_SLOP * (ag + am[:, None] + aphi * aK[:, None])
    r = norm.r[:, None]
    rho_G = ((1 + norm.rho_R) * (1 + u) ** 2 - 1)[:, None]
    gx_pre = r * (1 + rho_G) * E_T + rho_G * r * aT + eta
    overflow |= ((ag + E_g).max(axis=1) > top) | ((r * (aT + E_T) * (1 + rho_G)).max(axis=1) > top)
    overflow |= ((aphi + E_phi) * (aK + E_K)[:, None]).max(axis=1) > top
    bad_rows = unsafe | overflow
    gx_pre = np.where(bad_rows[:, None], np.inf, gx_pre)
    gx = _round_out(gx_pre, r * aT, out, acc, model)
    gx = np.where(r * aT + gx > out.max_finite, np.inf, gx)

    return gx_pre, gx
