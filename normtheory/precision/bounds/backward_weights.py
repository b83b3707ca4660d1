"""Step B7 of the backward derivation and its probabilistic form P1–P4: the bounds on gw and gb.

Notation as in bounds/backward_gx.py; h_R = the model's reduction depth over R rows.
 B7. gw_j = Σ_rows gy·n: terms p̂ = gy'·n̂ fused or rounded (llama: fl_o(gy·fl_o(n̂)), each
     rounded in the output format, n̂ first), summed over R rows in the accumulator:
     |ĝw − gw| ≤ Σ_rows E_t + γ_{h_R+1}·Σ_rows(|gy·n| + E_t) + R·η, E_t = |gy|E_n + η_in(|n| + E_n)
     (llama: E_n' = E_n + u_o(|n| + E_n) + η_o, E_t = |gy|E_n' + u_o|gy|(|n| + E_n') + η_o and
     γ_{h_R}). gb_j = Σ_rows gy: γ_{h_R}·Σ|gy| + R·η_in. Then one rounding to the weight format.
     These depend on the number of rows R (through h_R) and on Σ|gy·n|, as they must.
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
     within ½ulp(W_k) of its operand sum (`subgaussian_sum_error`, toolkit/sums.py: a post-order of the
     tree makes every subtree's error a difference of the martingale, so |w_k| ≤ |s_k| + 2B on the event
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
     9.8·10⁻⁴ < FAILURE_PROBABILITY (bounds/backward.py) in all. λ_R grows like sqrt(2·ln R)
     (5.27 at R = 64).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from normtheory.formats import FloatFormat
from normtheory.precision.bounds.affine import gradient_rounding_error
from normtheory.precision.bounds.normalized import Normalized, normalized_error, shared_or_evaluated
from normtheory.precision.bounds.scale import rsqrt_error_per_row
from normtheory.precision.toolkit.rounding import F64_SLOP, HEADROOM
from normtheory.precision.toolkit.sums import subgaussian_sum_error
from normtheory.registry import NormSpec

# gw's split of the backward's FAILURE_PROBABILITY (P4): its own two statements at λ = LAMBDA
# (< 8.8e-5 each) and, for the magnitudes, ROW_STATEMENTS forward statements per row
ROW_STATEMENTS = 6  # bounds/forward.py: an element's forward bound uses at most six statements
ROW_MAGNITUDE_BUDGET = 8e-4


def gw_bound(spec: NormSpec, norm: Normalized, *, x: np.ndarray, gy: np.ndarray, eps: float, out: FloatFormat,
             w_out: FloatFormat, E_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step B7 for gw (with P1–P4 in the probabilistic kind): (bound before the rounding to the
    weight format, bound in it)."""
    ctx = norm.ctx
    model, acc, eta, eta_in = ctx.model, ctx.acc, ctx.eta, ctx.eta_in
    rows = x.shape[0]
    h_rows = model.reduction_depth(rows)
    agy, an = np.abs(gy), np.abs(norm.n)
    # every row's E_n enters gw_j: in the probabilistic kind they are P4's row-budgeted
    # magnitudes (the forward's λ = 4.5 statements of R rows would fail R times too often)
    # the worst-case normalized values: a base of P4's magnitudes and of P2's rsqrt error (evaluated once)
    worst = normalized_error(spec, x, ctx.with_kind("worst"), eps=eps) if ctx.probabilistic else None
    magnitudes = row_magnitudes(spec, x, norm, eps=eps, worst=worst) if ctx.probabilistic else None
    E_n_rows = E_n if magnitudes is None else np.where(np.isfinite(E_n), magnitudes.err_n, np.inf)
    if model.output == "llama":
        u_o, eta_o = out.unit_roundoff, out.min_subnormal / 2
        E_n_out = E_n_rows + u_o * (an + E_n_rows) + eta_o
        E_t = agy * E_n_out + u_o * agy * (an + E_n_out) + eta_o
        depth = h_rows
    else:
        E_t = agy * E_n_rows + eta_in * (an + E_n_rows)
        depth = h_rows + 1
    sum_agyn = (agy * an).sum(axis=0)
    gw_pre = E_t.sum(axis=0) + ctx.gamma(depth) * (sum_agyn + E_t.sum(axis=0)) + rows * eta
    if magnitudes is not None:
        scales = row_shared_scales(spec, x, norm, eps=eps, worst=worst)
        gw_pre = np.minimum(gw_pre, gw_probabilistic(spec, norm, gy=gy, scales=scales, out=out, E_n=E_n,
                                                     magnitudes=magnitudes))
    gw_pre = np.where((sum_agyn + gw_pre) * (1 + ctx.gamma(depth)) > acc.max_finite / HEADROOM, np.inf, gw_pre)
    gw_mag = np.abs((gy * norm.n).sum(axis=0)) + F64_SLOP * sum_agyn
    gw = gradient_rounding_error(gw_pre, gw_mag, out=w_out, acc=acc, truncate=model.output == "truncate")
    return gw_pre, np.where(gw_mag + gw > w_out.max_finite, np.inf, gw)


def gb_bound(norm: Normalized, *, gy: np.ndarray, w_out: FloatFormat, gy_not_exact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step B7 for gb = Σ_rows gy (P3 with exact terms in the probabilistic kind)."""
    ctx = norm.ctx
    model, acc = ctx.model, ctx.acc
    rows, n = gy.shape
    h_rows = model.reduction_depth(rows)
    agy = np.abs(gy)
    sum_agy = agy.sum(axis=0)
    gb_pre = ctx.gamma(h_rows) * sum_agy + rows * ctx.eta_in
    if ctx.probabilistic:  # the rows' sum alone: no term errors but DAZ's shifts
        partial = subgaussian_sum_error(gy.T, ctx=ctx, proxy_sq=np.zeros(n), linear=np.full(gy.T.shape, ctx.eta_in),
                                        first_step_rounds=False)
        gb_pre = np.minimum(gb_pre, partial)
    too_large = sum_agy * (1 + ctx.gamma(h_rows)) > acc.max_finite / HEADROOM
    gb_pre = np.where(too_large | gy_not_exact.any(), np.inf, gb_pre)
    gb_mag = np.abs(gy.sum(axis=0)) + F64_SLOP * sum_agy
    gb = gradient_rounding_error(gb_pre, gb_mag, out=w_out, acc=acc, truncate=model.output == "truncate")
    return gb_pre, np.where(gb_mag + gb > w_out.max_finite, np.inf, gb)


def row_shared_scales(spec: NormSpec, x: np.ndarray, norm: Normalized, *, eps: float,
                      worst: Normalized | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scale of θ_r, scale of δμ_r) per row: the sub-Gaussian scales of the row-shared errors
    (module docstring, P2). θ_r = α_r + θ'_r, α_r the rsqrt's own error (|α_r| ≤ α) and θ'_r
    what the statistic's roundings make of r (first order, a martingale of those roundings);
    the two are independent, so scale(θ) = sqrt(α² + s'²) + α·s' (the last term: the product
    (1 + θ')(1 + α) − 1), with s' the probabilistic bound of the statistic's part evaluated at
    λ = 1 (`Normalized.rho_stat`) — an upper bound on the martingale's scale u·sqrt(Σw_k²), its
    worst-case parts bounded as they are, the rounding of v̂ = fl(stat̂ + fl(eps)) one more
    increment of that martingale (in quadrature: bounds/scale.scale_error, `scale_only`). δμ likewise:
    the probabilistic mean error at λ = 1.
    α per row: bounds/scale.rsqrt_error_per_row at the worst-case statistic part (it always holds) —
    the rsqrt's error measured against the row's binade, below the relative α = u + 2ku
    wherever r is not just under a power of two. `worst`: the worst-case normalized values of these
    rows, when the caller has them."""
    ctx = norm.ctx
    unit = normalized_error(spec, x, ctx.with_kind("probabilistic", lam=1.0), eps=eps, scale_only=True)  # scales: λ = 1
    stat_part = unit.rho_stat
    worst = shared_or_evaluated(spec, x, ctx.with_kind("worst"), eps=eps, shared=worst)
    alpha = rsqrt_error_per_row(ctx.model, ctx.acc, worst.r, worst.rho_stat)
    return np.hypot(alpha, stat_part) + alpha * stat_part, unit.mean_err


def row_statement_lambda(rows: int, u: float) -> float:
    """λ of the forward's per-row statements inside gw's union bound (module docstring, P4):
    each of the ROW_STATEMENTS·rows statements fails with probability at most
    ROW_MAGNITUDE_BUDGET/(ROW_STATEMENTS·rows) = 2·exp(−λ²(1 − u)²/2)."""
    per_statement = ROW_MAGNITUDE_BUDGET / (ROW_STATEMENTS * max(rows, 1))
    return math.sqrt(2 * math.log(2 / per_statement)) / (1 - u)


def row_magnitudes(spec: NormSpec, x: np.ndarray, norm: Normalized, *, eps: float,
                   worst: Normalized | None = None) -> Normalized:
    """The magnitudes that bound gw's increments (P4): per element the smaller of the worst-case
    bound (always true) and the probabilistic one at `row_statement_lambda` (true except on the
    row's budgeted failure events) — both are fixed by the data, so the smaller holds whenever
    both statements do. `worst`: the worst-case normalized values of these rows, when the caller
    has them."""
    ctx = norm.ctx
    worst = shared_or_evaluated(spec, x, ctx.with_kind("worst"), eps=eps, shared=worst)
    prob = normalized_error(spec, x, ctx.with_kind("probabilistic", lam=row_statement_lambda(x.shape[0], ctx.u)), eps=eps)
    return replace(worst, rho_R=np.minimum(worst.rho_R, prob.rho_R), err_n=np.minimum(worst.err_n, prob.err_n),
                   mean_err=np.minimum(worst.mean_err, prob.mean_err))


def gw_probabilistic(spec: NormSpec, norm: Normalized, *, gy: np.ndarray, scales: tuple[np.ndarray, np.ndarray],
                     out: FloatFormat, E_n: np.ndarray, magnitudes: Normalized) -> np.ndarray:
    """Step B7, probabilistic: gw_j = Σ_rows gy·n̂ as one martingale per column (module docstring,
    P1–P3). Row r's term error gy(n̂ − n) = θ_r·gy·n + (1 + θ_r)r·δμ_r·gy (shared by the row: one
    increment of scale s_θ|gy·n| + (1 + ρ_R)r·s_μ|gy|, independent of the other rows')
    + (1 + θ_r)(n + r(δμ + f))ε·gy (the element's one or two roundings, each within half an ulp
    of its result: independent, their scales add in squares) + linear parts (flushes f, e,
    DAZ's shift of gy); llama adds the two output-format roundings of fl_o(gy·fl_o(n̂)), scale
    u_o each. The magnitudes that bound increments — (1 + ρ_R), |n| + E_n, Δ — are
    `row_magnitudes` (P4: the smaller of the worst-case and the row-budgeted probabilistic
    bounds; on long bf16 sums the worst-case E_n is finite but as large as n itself)."""
    ctx = norm.ctx
    acc, eta, eta_in, r, model = ctx.acc, ctx.eta, ctx.eta_in, norm.r[:, None], ctx.model
    rho = magnitudes.rho_R[:, None]
    delta = magnitudes.mean_err[:, None]
    E_n = np.where(np.isfinite(E_n), magnitudes.err_n, np.inf)  # unsafe rows: no bound
    theta_scale, delta_scale = (s[:, None] for s in scales)
    agy, an = np.abs(gy), np.abs(norm.n)
    flush = eta_in + (eta if spec.centred else 0.0)
    shared = theta_scale * agy * an + (1 + rho) * r * delta_scale * agy
    # the element's own roundings, each within half an ulp of its result: n̂ = fl(ĉ·r̂) of size at
    # most |n| + E_n and, for a centred op, ĉ = fl(x − μ̂) of size at most |c| + Δ + flush (scaled by r̂)
    element = 0.5 * acc.ulp(an + E_n) * agy
    if spec.centred:
        element = np.hypot(element, (1 + rho) * r * 0.5 * acc.ulp(an / r + delta + flush) * agy)
    linear = (1 + rho) * r * flush * agy + eta * agy + eta_in * an
    linear = np.where(np.isfinite(E_n), linear + eta_in * E_n, np.inf)  # unsafe rows: no bound
    rounded_terms = not model.fma
    if model.output == "llama":
        u_o, eta_o = out.unit_roundoff, out.min_subnormal / 2
        element = np.hypot(element, u_o * agy * (an + E_n))  # fl_o(n̂), then fl_o(gy·n̂): two roundings
        element = np.hypot(element, u_o * agy * (an + E_n) * (1 + u_o))
        linear = linear + eta_o * (agy + 1)
        rounded_terms = False  # the products are rounded in the output format (above), then summed
    proxy_sq = (shared**2 + element**2).sum(axis=0)
    first_step_rounds = model.fma and model.output != "llama"
    return subgaussian_sum_error((gy * norm.n).T, ctx=ctx, proxy_sq=proxy_sq, linear=linear.T,
                                 first_step_rounds=first_step_rounds, rounded_terms=rounded_terms)
