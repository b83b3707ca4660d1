"""Probabilistic error bounds of a model's tree sum, built on the one martingale bound.

The error Σ_k e_k of a tree sum, e_k = fl(ŵ_k) − ŵ_k the k-th rounding (ŵ_k the exact sum of
the computed operands it adds), is a martingale under the model of Higham and Mary
(toolkit/martingale.py), with |e_k| ≤ c_k = half an ulp of ŵ_k. What bounds |ŵ_k| is the exact
operand sum s_k (toolkit/tree.py) plus the drift of the computed operands from it — the error
of the subtree below rounding k. The two forms below differ only in how they bound that drift:

- exact terms (`probabilistic_sum_error`, `positive_sum_error`; the forward's sums): the drift
  is at most γ_h·a_k always (a_k the partial sum of |terms| below it), which needs no stopping;
  in a chain (one lane: the sequential, fp16 and bf16 models) the subtree is the prefix, so
  stopping the martingale when a prefix error first exceeds E bounds the drift by E itself —
  without that, a 256-term bf16 sum (γ_h ≈ 1) would have no partial-sum form at all. The
  smaller of the two is used (both hold on the same event).
- computed terms (`subgaussian_sum_error`; the backward's sums): terms with their own errors
  (martingale parts of given scales, and linear parts); a post-order of the tree makes every
  subtree's error a difference of the martingale, so the drift is at most 2B on the event that
  the level B holds.
"""

from __future__ import annotations

import math

import numpy as np

from normtheory.precision.toolkit.context import BoundContext
from normtheory.precision.toolkit.martingale import azuma_radius, stopping_level
from normtheory.precision.toolkit.rounding import binade, half_ulp
from normtheory.precision.toolkit.tree import operand_sums, partial_sums_norm, tree_partial_sums


def probabilistic_sum_error(values: np.ndarray, ctx: BoundContext) -> np.ndarray:
    """Probabilistic bound on the error of Σ values (exact inputs) summed along axis 1 by the
    model's tree: the exact-terms martingale over the tree's partial sums (fails with probability
    at most 2·exp(−λ²/2))."""
    s, a = tree_partial_sums(values, ctx.model)
    return _exact_terms_martingale(np.abs(s), a, own=None, n=values.shape[1], ctx=ctx)


def positive_sum_error(terms: np.ndarray, ctx: BoundContext) -> np.ndarray:
    """Probabilistic bound on the error of the model's tree sum of products (squares) whose
    exact values are at most `terms` (≥ 0): the partial sums of nonnegative terms are at most
    those of `terms`, and each product's own rounding (fused into the first step of a lane,
    separate without FMA) is counted for every term (an upper bound)."""
    s, a = tree_partial_sums(terms, ctx.model)
    return _exact_terms_martingale(s, a, own=terms, n=terms.shape[1], ctx=ctx)


def _exact_terms_martingale(s_abs: np.ndarray, a: np.ndarray, *, own: np.ndarray | None, n: int,
                            ctx: BoundContext) -> np.ndarray:
    """λ·sqrt(Σ_k c_k²): Azuma–Hoeffding for the error Σ_k e_k of a tree sum, e_k = fl(ŵ_k) − ŵ_k.

    Under the model of Higham and Mary (each rounding's relative error mean zero given the
    earlier ones) the e_k are martingale increments, |e_k| ≤ u·binade(|ŵ_k|) (half an ulp).
    ŵ_k, the computed operands' exact sum, is within the error of the subtree below it of
    the exact partial sum s_k: within γ_h·a_k always, so c_k = u·binade(|s_k| + γ_h·a_k) bounds
    |e_k|. For a chain (one lane) the subtree is the prefix: stop the martingale at the first
    prefix whose error exceeds E; before that |ŵ_k − s_k| ≤ E, so with c_k(E) =
    u·binade(|s_k| + min(E, γ_h·a_k)) Azuma gives P(some prefix error > E) ≤ 2·exp(−λ²/2)
    for any E ≥ λ·‖c(E)‖. E₀ = λu‖s‖/(1 − λu√K) is such an E (c_k(E) ≤ u(|s_k| + E), so
    λ‖c(E₀)‖ ≤ λu‖s‖ + λu√K·E₀ = E₀), and so is E_{i+1} = λ‖c(E_i)‖ (c is monotone in E, so every
    iterate is again such an E, and no larger than the one before): `stopping_level` runs that
    iteration down from E₀ and checks its result (FIXED_POINT_ITERATIONS steps; two left the
    bound ≈ 2% above the fixed point on 256-term bf16 sums, where the drift E is a fifth of the
    sum). This is what makes long bf16 and fp16 sums boundable at all (γ_h·a_k is as large as the
    sum there). `own` adds the terms' own roundings (products rounded before they are added, or
    the first product of each lane under FMA): u·binade of their magnitudes.
    """
    model, u, lam = ctx.model, ctx.u, ctx.lam
    rows, count = s_abs.shape
    worst_h = ctx.worst_gamma(model.reduction_depth(n))
    own_sq = 0.0 if own is None else ((u * binade(own)) ** 2).sum(axis=1)
    drift = worst_h * a

    def radius(shift: np.ndarray) -> np.ndarray:
        return azuma_radius(((u * binade(s_abs + shift)) ** 2).sum(axis=1) + own_sq, lam)

    bound = radius(drift)
    if model.lane_count(n) == 1 and count > 0:  # a chain
        reach = lam * u * math.sqrt(count + (0 if own is None else own.shape[1]))
        if reach < 1:
            start = lam * u * np.sqrt((s_abs**2).sum(axis=1) + (0 if own is None else (own**2).sum(axis=1))) / (1 - reach)
            stopped = stopping_level(lambda level: radius(np.minimum(drift, level[:, None])), rows=rows, start=start)
            bound = np.minimum(bound, stopped)
    return bound


def subgaussian_sum_error(values: np.ndarray, *, ctx: BoundContext, proxy_sq: np.ndarray, linear: np.ndarray,
                          first_step_rounds: bool, rounded_terms: bool = False, linear_total: np.ndarray | None = None,
                          phases: int = 1) -> np.ndarray:
    """Probabilistic bound on |ŝ − Σ values| per sum (row) of the model's tree sum of computed terms
    t̂_i = v_i + (martingale part) + (linear part, |·| ≤ linear_i); inf where it is not verified.

    Model (Higham and Mary's): every error below is mean zero given the errors before it in a
    post-order of the tree (each leaf's own errors, then the subtree's roundings: the computed
    value of any subtree then differs from its exact value by a difference M_b − M_a of the
    martingale plus its linear parts), and either bounded or sub-Gaussian with the given scale.
    `proxy_sq` is Σ of the squared scales of the terms' own errors (the caller decides what is
    independent of what); a rounding applied to an operand sum w errs by at most half an ulp of
    |w| — u·2^⌊log2|w|⌋, on average 1.4 times below u|w|. On the event max_k |M_k| ≤ B,
    |w_k| ≤ |s_k| + A_k(linear) + 2B =: W_k, so with c_k = ½ulp(W_k) the stopped martingale has
    increments bounded by c_k, and the maximal Azuma–Hoeffding inequality gives
    P(max|M| ≥ λ·sqrt(proxy + Σc_k²)) ≤ 2·exp(−λ²/2). Any B with B ≥ λ·sqrt(proxy + Σ c_k(B)²)
    therefore bounds |M| with that failure probability; B is found by iterating that monotone map
    upward from 0 and verified at B(1 + 2^-8) (`stopping_level`).
    `rounded_terms`: every term is rounded in the accumulator before the tree (an unfused product),
    one more increment ½ulp(|v_i| + linear_i + 2B) per term. Under FTZ the absolute error of a
    result flushed to zero (`ctx.flush`, the smallest normal) is added linearly for every rounding.
    `linear_total`: a bound on |Σ linear parts| sharper than Σ linear (errors a sum shares, which
    cancel with it); `linear` still bounds the operands' drift term by term. `phases`: the terms'
    errors come in that many groups that must precede one another in time (B's subtractions, on
    which r̂ and so every product rounding depends, before the products): the martingale runs
    through the groups one after the other, each group's leaves in the tree's post-order, so a
    subtree's error is one difference of the martingale per group and |w_k| ≤ |s_k| + A_k + 2·phases·B.
    """
    acc, flush = ctx.acc, ctx.flush
    steps_v = operand_sums(values, ctx.model, first_step_rounds=first_step_rounds)
    steps_lin = operand_sums(linear, ctx.model, first_step_rounds=first_step_rounds)
    roundings = steps_v.shape[1] + (values.shape[1] if rounded_terms else 0)
    linear_total = (linear.sum(axis=1) if linear_total is None else linear_total) + roundings * flush
    base = np.abs(steps_v) + steps_lin + roundings * flush
    term_base = np.abs(values) + linear

    def radius(level: np.ndarray) -> np.ndarray:
        total = proxy_sq + (half_ulp(acc, base + 2 * phases * level[:, None]) ** 2).sum(axis=1)
        if rounded_terms:
            total = total + (half_ulp(acc, term_base + 2 * phases * level[:, None]) ** 2).sum(axis=1)
        return azuma_radius(total, ctx.lam)

    level = stopping_level(radius, rows=values.shape[0])
    return np.where(np.isfinite(level), level + linear_total, np.inf)


def minkowski_sum_error(values: np.ndarray, errors: np.ndarray, *, ctx: BoundContext, rounded_terms: bool) -> np.ndarray:
    """Probabilistic bound on the rounding error of the model's tree sum of computed terms t̂_i,
    |t̂_i − v_i| ≤ errors_i (v exact, signed), in u-relative form: the exact-terms martingale with
    |ŵ_k| ≤ |s_k(v)| + A_k(errors) + γ_h·A_k(|v| + errors), its norm bounded by Minkowski,
    λ·u·(‖s(v)‖ + ‖A(errors)‖ + γ_h·‖A(|v| + errors)‖), plus λ·u·sqrt(Σ(|v| + errors)²) for the
    terms' own roundings when `rounded_terms` (every term's product rounding is one more
    martingale step)."""
    model = ctx.model
    magnitudes = np.abs(values) + errors
    worst_h = ctx.worst_gamma(model.reduction_depth(values.shape[1]))
    partial = (partial_sums_norm(values, model) + partial_sums_norm(errors, model)
               + worst_h * partial_sums_norm(magnitudes, model))
    if rounded_terms:
        partial = partial + np.sqrt((magnitudes**2).sum(axis=1))
    return ctx.lam * ctx.u * partial
