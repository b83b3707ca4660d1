"""A-priori componentwise forward error bounds |ŷ_i − y_i| for every `Model` (emulate.py).

Notation (per row; u = unit roundoff of the accumulator, u_o of the output format):
  n entries, width d (n = d − 1 for CRMSNorm), μ = mean x, σ² = biased variance,
  q = mean x², m₁ = mean |x|, X = max |x|, v = σ² + eps (LayerNorm) or q + eps (RMSNorm),
  h = reduction depth of the model (models.py), η = absolute error of one rounding at the
  bottom of the range (half the smallest subnormal; the smallest normal under FTZ),
  γ_k = k·u/(1 − k·u) (Higham, ASNA §3.1: the product of k factors (1 + δ), |δ| ≤ u, is
  1 + θ_k with |θ_k| ≤ γ_k).
The condition numbers that appear are κ = sqrt((μ² + σ²)/(σ² + eps)) ≥ m₁/sqrt(v) for the
mean error of LayerNorm (finite on constant rows because eps is in it), and
κ∞ = X/sqrt(σ² + eps) for Welford's running means.

Derivation, LayerNorm two-pass (proofs/test_bounds_algebra.py checks the algebra):
 1. ŝ = Σx(1 + θ_h) termwise, μ̂ = fl(ŝ·fl(1/d)): |μ̂ − μ| ≤ Δ := γ_{h+2}·m₁.
 2. ĉ_i = fl(x_i − μ̂) = (c_i + δμ)(1 + δ_i), δμ = μ − μ̂. Because Σc_i = 0,
    Σ(c_i + δμ)² = dσ² + d·δμ² exactly — the first-order error of the mean cancels, which is
    why two-pass is good. With the square, the h additions and the scaling by fl(1/d):
    var̂ = (σ² + δμ²)(1 + θ_{h+5}), so |var̂ − σ²| ≤ γ_{h+5}(σ² + Δ²) + Δ².
 3. v̂ = fl(var̂ + fl(eps)): |v̂ − v| ≤ E_v := E_var + e_ε + u·(v + E_var + e_ε) + η with
    e_ε = u·eps + η (eps itself may round into the subnormals of fp16); ρ_v = E_v/v.
 4. r̂ = rsqrt(v̂) within α (relative): (1 + ρ)^(−1/2) − 1 is at most ρ/(2(1 − ρ)^(3/2)) in
    size for |ρ| < 1 (mean value theorem), so |r̂/r − 1| ≤ ρ_R := (1 + ρ_r)(1 + α) − 1.
 5. n̂_i = fl(ĉ_i·r̂) = (c_i + δμ)·r·(1 + θ), |θ| ≤ ρ_N := (1 + ρ_R)(1 + u)² − 1:
    |n̂_i − n_i| ≤ ρ_N|n_i| + (1 + ρ_N)·Δ/sqrt(v) — the second term is γ_{h+2}·κ at most.
 6. Affine in the accumulator: weight |w|E_n(1 + u) + u|n·w|; weight_bias (two roundings,
    or one FMA, which the same expression covers) |w|E_n(1 + u)² + (2u + u²)|n·w| + u|b|;
    offset_weight with (1 + w) formed in a format of unit roundoff u_f: |1+w|(1+u_f)·E_n(1+u)
    + |n|·u_f|1 + w|(1 + u) + u|n(1 + w)|.
 7. Output: once: + u_o(|z| + E_z) + η_o (none when the output format is at least as precise
    as the accumulator); truncate: + 2u_o(|z| + E_z) + 2η_o (a truncation errs by < 1 ulp,
    and ulp(z) ≤ 2u_o|z|); llama: n̂ is rounded first (E_n + u_o(|n| + E_n) + η_o) and the
    affine step uses u_o.
RMSNorm: q̂ = q(1 + θ_{h+3}); the mean term is absent. CRMSNorm: Σz with error γ_h·Σ|z|,
(Σz)² then error E₁(2|Σz| + E₁), plus γ_{h+5}(Σz² + (Σz)²)/d.
Welford (lanes of k entries, t merge levels, exact identity S = Σ_i c_i·δ_i² over all
updates, c = (j − 1)/j for a lane step j and na·nb/n for a merge): every running mean stays
in [min x, max x] (rounding is monotone), which gives the running-mean error
e ≤ 1.01·u·X·(k/2 + 5 + 8t) (lane: j·e_j ≤ (j − 1)e_{j−1} + uX(j + 4.02), merge: + 7.1uX per
level). An update's error is c(2|δ|E + E²) + γ₄·c(|δ| + E)², E = 2e, and by Cauchy–Schwarz
Σ_i |δ_i|·(weights) ≤ sqrt(S)·(sqrt(2n) + 2·sqrt(n·t/4)); the nonnegative updates are summed
with depth k + 2t + 3. One-pass: var̂ = fl(q̂ − μ̂²): |var̂ − σ²| ≤ γ_{h+5}(q + (|μ| + Δ)²) +
(1 + γ₂)·Δ(2|μ| + Δ) — relative to v that is ≈ h·u·κ², the catastrophe of E[x²] − E[x]².
Eps outside (r = 1/(sqrt(stat) + eps)): |sqrt(a) − sqrt(b)| ≤ min(|a − b|/sqrt(b), sqrt|a − b|).

Probabilistic form (`kind="probabilistic"`, labelled as such): every γ_k is replaced by
γ̃_k(λ) = exp(λ·sqrt(k)·u + k·u²/(1 − u)) − 1 (Higham and Mary 2019, Thm 2.8: holds with
probability ≥ 1 − 2·exp(−λ²(1 − u)²/2) for independent mean-zero rounding errors); λ = 4.5,
so a single γ̃ fails with probability < 3·10⁻⁴. The rsqrt error α, the final rounding and
Welford's running-mean term stay worst-case (they are single, possibly systematic errors).

Every bound is multiplied by SAFETY = 1 + 2^-20: the bound itself and the row statistics it
uses are evaluated in binary64, with relative error far below 2^-20 for n ≤ 2^24.
Rows where an intermediate may overflow (domains.overflow_threshold), or with an input that
the accumulator cannot hold exactly (fp32 data in a bf16 accumulator), get an infinite bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from normtheory.formats import FORMATS, FloatFormat
from normtheory.precision.domains import overflow_threshold
from normtheory.precision.models import Model

SAFETY = 1.0 + 2.0**-20
LAMBDA = 4.5
KINDS = ("worst", "probabilistic")


@dataclass(frozen=True)
class ForwardBound:
    pre_rounding: np.ndarray  # bound on |z − y| before the output rounding (or llama's chain)
    total: np.ndarray  # bound on |ŷ − y| for the output in the output format


class Gammas:
    """γ_k (worst case) or γ̃_k(λ) (probabilistic) for one unit roundoff."""

    def __init__(self, u: float, kind: str):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.u, self.kind = u, kind

    def __call__(self, k) -> float:
        k = float(k)
        if self.kind == "worst":
            return k * self.u / (1.0 - k * self.u) if k * self.u < 1 else math.inf
        return math.expm1(LAMBDA * math.sqrt(k) * self.u + k * self.u**2 / (1.0 - self.u))


def _eta(fmt: FloatFormat, ftz: bool) -> float:
    return fmt.min_normal if ftz else fmt.min_subnormal / 2


def _row_stats(x: np.ndarray):
    mu = x.mean(axis=1)
    var = ((x - mu[:, None]) ** 2).mean(axis=1)
    return mu, var


def _stat_error(op, model, x, d, g, u, eta):
    """(Δ: bound on the mean error or 0, the statistic, bound on its error) per row."""
    rows, n = x.shape
    h = model.reduction_depth(n)
    abs_x = np.abs(x)
    underflow = (n + 4) * eta
    if op == "rmsnorm":
        q = (x * x).mean(axis=1)
        return np.zeros(rows), q, g(h + 3) * q + underflow
    if op == "crmsnorm":
        s1, s2 = x.sum(axis=1), (x * x).sum(axis=1)
        e1 = g(h) * abs_x.sum(axis=1)
        total = (s1 * s1 + s2) / d
        err = g(h + 5) * total + (1 + g(2)) * e1 * (2 * np.abs(s1) + e1) / d + underflow
        return np.zeros(rows), total, err
    mu, var = _row_stats(x)
    if model.stats == "two_pass":
        delta = g(h + 2) * abs_x.mean(axis=1) + 2 * eta  # the scaling by fl(1/d) may underflow
        return delta, var, g(h + 5) * (var + delta**2) + delta**2 + underflow
    if model.stats == "one_pass":
        delta = g(h + 2) * abs_x.mean(axis=1) + 2 * eta
        q = (x * x).mean(axis=1)
        big = np.abs(mu) + delta
        return delta, var, g(h + 5) * (q + big**2) + (1 + g(2)) * delta * (2 * np.abs(mu) + delta) + underflow
    k, t = model.per_lane(n), model.tree_levels(n)
    x_max = abs_x.max(axis=1)
    # worst-case in both kinds (see above); each step's divide/multiply may also underflow by η
    mean_err = 1.01 * u * x_max * (k / 2 + 5 + 8 * t) + 2 * (k + t) * eta
    e = 2 * mean_err
    s = d * var
    spread = math.sqrt(2 * n) + 2 * math.sqrt(n * t / 4)
    first = e * np.sqrt(s) * spread + e * e * (n + n * t / 4)
    err_s = first + g(k + 2 * t + 6) * 2 * (s + first)
    return mean_err, var, g(1) * var + (1 + g(1)) * err_s / d + underflow


def _scale_error(model, stat, err_stat, eps, u, eta):
    """(r = exact 1/scale, bound ρ_R on |r̂/r − 1|) per row."""
    alpha = (1 + u + 2.0**-51) * (1 + 2 * model.rsqrt_ulps * u) * (1 + model.rsqrt_rel) * (1 + u) - 1
    if model.rsqrt_rel == 0:
        alpha = (1 + u + 2.0**-51) * (1 + 2 * model.rsqrt_ulps * u) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        if model.eps_mode == "inside":
            v = stat + eps
            err_eps = u * eps + eta  # fl(eps) may be subnormal in the accumulator (fp16)
            err_v = err_stat + err_eps + u * (v + err_stat + err_eps) + eta
            rho_v = err_v / v
            rho_r = np.where(rho_v < 1, rho_v / (2 * np.maximum(1 - rho_v, 1e-300) ** 1.5), np.inf)
            r = 1 / np.sqrt(v)
        else:
            root = np.sqrt(stat)
            err_root = np.minimum(np.where(root > 0, err_stat / root, np.inf), np.sqrt(err_stat))
            den = root + eps
            err_den = (err_root + u * root + eta + u * eps + eta) * (1 + u) + u * den + eta
            rho_d = err_den / den
            rho_r = np.where(rho_d < 1, rho_d / np.maximum(1 - rho_d, 1e-300), np.inf)
            r = 1 / den
    return r, (1 + rho_r) * (1 + alpha) - 1


def _affine_error(affine, n_abs, err_n, w, b, u, eta, offset_u):
    """(|z|, bound on |ẑ − z|) for the affine step done in a format of unit roundoff u."""
    if affine == "none":
        return n_abs, err_n
    if affine == "weight":
        aw = np.abs(w)
        return n_abs * aw, aw * err_n * (1 + u) + u * n_abs * aw + eta
    if affine == "weight_bias":
        aw, ab = np.abs(w), np.abs(b)
        z_abs = n_abs * aw + ab  # an upper bound on |z|, enough for the rounding terms
        return z_abs, aw * err_n * (1 + u) ** 2 + (2 * u + u * u) * n_abs * aw + u * ab + 2 * eta
    if affine == "offset_weight":
        a1 = np.abs(1.0 + w)
        err_w1 = offset_u * a1 + eta
        w1 = a1 + err_w1
        return n_abs * a1, w1 * err_n * (1 + u) + n_abs * err_w1 * (1 + u) + u * n_abs * a1 + eta
    raise ValueError(f"unknown affine mode {affine!r}")


def forward_bound(op: str, x, w=None, b=None, *, model: Model, eps: float, affine: str = "none",
                  out_format="fp32", kind: str = "worst") -> ForwardBound:
    """Componentwise bound on |ŷ − y| for `model` against the exact op with the model's eps_mode.

    An infinite element means no bound holds there (an infinite γ_k, ρ ≥ 1, possible overflow).
    """
    with np.errstate(all="ignore"):
        pre, total = _forward_bound(op, x, w, b, model, eps, affine, out_format, kind)
    # NaN can only come from 0·inf or inf − inf in the bound formulas: no bound there
    return ForwardBound(pre_rounding=np.where(np.isnan(pre), np.inf, pre),
                        total=np.where(np.isnan(total), np.inf, total))


@dataclass(frozen=True)
class Normalized:
    """What forward and backward bounds share: the exact normalized values and their error."""

    n: np.ndarray  # exact normalized values (x − μ)·r or x·r, evaluated in binary64
    err_n: np.ndarray  # bound on |n̂ − n| for the kernel's n̂ = fl(fl(x − μ̂)·r̂)
    r: np.ndarray  # exact 1/scale per row
    rho_R: np.ndarray  # bound on |r̂/r − 1| per row
    unsafe: np.ndarray  # rows with no bound (possible overflow, inputs the accumulator cannot hold)
    acc: FloatFormat
    eta: float  # one rounding's absolute underflow error in the accumulator
    eta_in: float  # DAZ: how far a loaded input may move (0 without DAZ)
    gammas: "Gammas"
    d: int


def normalized_error(op: str, x: np.ndarray, model: Model, eps: float, kind: str) -> Normalized:
    """Steps 1–5 of the derivation: the normalized values n̂ the kernel computes, bounded.

    Infinite and NaN intermediates (an infinite γ_k, ρ ≥ 1) are expected here: no warnings.
    """
    with np.errstate(all="ignore"):
        return _normalized_error(op, x, model, eps, kind)


def _normalized_error(op, x, model, eps, kind):
    acc = FORMATS[model.acc]
    u, eta = acc.unit_roundoff, _eta(acc, model.ftz)
    g = Gammas(u, kind)
    rows, n = x.shape
    d = n + 1 if op == "crmsnorm" else n
    mean_err, stat, err_stat = _stat_error(op, model, x, d, g, u, eta)
    # DAZ moves each input by at most η_in: the mean by η_in, the root of the statistic by
    # 2η_in (it is a Euclidean norm of the centred row over sqrt(d)), each n_i by η_in·r.
    eta_in = acc.min_normal if model.ftz else 0.0
    mean_err = mean_err + (eta_in if op == "layernorm" else 0.0)
    err_stat = err_stat + 4 * eta_in * np.sqrt(stat) + 4 * eta_in**2
    r, rho_R = _scale_error(model, stat, err_stat, eps, u, eta)
    centred = x - x.mean(axis=1, keepdims=True) if op == "layernorm" else x
    n_values = centred * r[:, None]
    rho_N = (1 + rho_R) * (1 + u) ** 2 - 1
    err_n = rho_N[:, None] * np.abs(n_values) + ((1 + rho_N) * (mean_err + eta_in) * r)[:, None] + eta
    err_n = np.where(np.isnan(err_n), np.inf, err_n)  # 0·inf: an infinite γ_k (k·u ≥ 1)
    unsafe = np.abs(x).max(axis=1) > overflow_threshold(op, model, n)
    # inputs must be exact in the accumulator (bf16 accumulation of fp32 data is not modelled)
    unsafe |= ~acc.is_representable(x).all(axis=1)
    return Normalized(n_values, err_n, r, rho_R, unsafe, acc, eta, eta_in, g, d)


def _forward_bound(op, x, w, b, model, eps, affine, out_format, kind):
    out = FORMATS[out_format] if isinstance(out_format, str) else out_format
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    rows, n = x.shape
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    b = np.zeros(n) if b is None else np.asarray(b, dtype=np.float64)
    norm = normalized_error(op, x, model, eps, kind)
    acc, u, eta = norm.acc, norm.acc.unit_roundoff, norm.eta
    n_abs, err_n = np.abs(norm.n), norm.err_n
    offset_u = acc.unit_roundoff if model.offset_format is None else FORMATS[model.offset_format].unit_roundoff
    u_o, eta_o = out.unit_roundoff, out.min_subnormal / 2
    if model.output == "llama":
        err_n = err_n + u_o * (n_abs + err_n) + eta_o
        z_abs, pre = _affine_error(affine, n_abs, err_n, w, b, u_o, eta_o, offset_u)
        total = pre
    else:
        z_abs, pre = _affine_error(affine, n_abs, err_n, w, b, u, eta, offset_u)
        if out.precision >= acc.precision:
            total = pre
        elif model.output == "truncate":
            total = pre + 2 * u_o * (z_abs + pre) + 2 * eta_o
        else:
            total = pre + u_o * (z_abs + pre) + eta_o
    unsafe = norm.unsafe.copy()
    affine_format = out if model.output == "llama" else acc
    if not (affine_format.is_representable(w).all() and affine_format.is_representable(b).all()):
        unsafe[:] = True  # weights must be exact where they are used (fp16 weights in bf16: no)
    pre = np.where(unsafe[:, None], np.inf, pre * SAFETY)
    total = np.where(unsafe[:, None] | (z_abs + total > out.max_finite), np.inf, total * SAFETY)
    return pre, total
