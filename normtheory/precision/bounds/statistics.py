"""Steps 1–2 of the forward derivation: the row statistic under the root and its error.

Notation as in bounds/forward.py (per row: n entries, width d, μ = mean x, σ² = biased
variance, q = mean x², m₁ = mean |x|, h = the model's reduction depth, η, γ_k; proofs/test_bounds_algebra.py
checks the algebra). Each function returns `StatisticError`: Δ (the bound on |μ̂ − μ|, 0 without
a mean), the exact statistic, and the bound on the computed statistic's error; the rounding of
v̂ = fl(stat̂ + fl(eps)) and the rsqrt are step 3–4 (bounds/scale.py). Welford's statistics are
bounds/welford.py's; bounds/statistic_rules.py maps each registry statistic to its function.

LayerNorm two-pass:
 1. ŝ = Σx(1 + θ_h) termwise, μ̂ = fl(ŝ·fl(1/d)): |μ̂ − μ| ≤ Δ := γ_{h+2}·m₁ (`mean_error`).
 2. ĉ_i = fl(x_i − μ̂) = (c_i + δμ)(1 + δ_i), δμ = μ − μ̂. Because Σc_i = 0,
    Σ(c_i + δμ)² = dσ² + d·δμ² exactly — the first-order error of the mean cancels, which is
    why two-pass is good. With the square, the h additions and the scaling by fl(1/d):
    var̂ = (σ² + δμ²)(1 + θ_{h+5}), so |var̂ − σ²| ≤ γ_{h+5}(σ² + Δ²) + Δ².
The statistics without a mean are bounds/statistic_rules.py's.
One-pass: var̂ = fl(q̂ − μ̂²): |var̂ − σ²| ≤ γ_{h+5}(q + (|μ| + Δ)²) + (1 + γ₂)·Δ(2|μ| + Δ) —
relative to v that is ≈ h·u·κ², the catastrophe of E[x²] − E[x]².
Every statistic adds (n + 4)·η for the underflow of its roundings.

Probabilistic kind (the model of toolkit/rounding.py): every γ_k becomes γ̃_k(λ), and the sums
— the mean's, the sums of squares of two-pass LayerNorm and RMSNorm — also have the sharper
partial-sum form of the martingale argument (toolkit/sums.py: `probabilistic_sum_error`,
`positive_sum_error`): the error Σ_k e_k of a sum is a martingale whose k-th increment is at
most u·binade(|ŵ_k|) — half an ulp of the operand sum it rounds, which is up to 2× below
u·|ŵ_k| (precision-aware, as in Hallman and Ipsen 2023) — so by Azuma–Hoeffding
|Σe_k| ≤ λ·sqrt(Σ_k (u·binade(|s_k| + drift_k))²), s_k the exact partial sums, except with
probability 2·exp(−λ²/2). The drift (how far ŵ_k may be from s_k) is γ_h·Σ|x| below it in a
tree; in a chain (one lane: the sequential, fp16 and bf16 models) the martingale is stopped
when a prefix error first exceeds E, which makes the drift ≤ E for any E ≥ λ·‖c(E)‖ — without
that, a 256-term bf16 sum (γ_h ≈ 1) would have no partial-sum form at all. Scaling by fl(1/d)
is exact when d is a power of two. The smaller of the γ̃ and partial-sum forms is used (a union
bound). Under DAZ the partial sums are those of the loaded (flushed) inputs (`BoundContext.loaded`),
and the step from x to x' is added worst-case (bounds/normalized.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normtheory.precision.toolkit.context import BoundContext
from normtheory.precision.toolkit.rounding import scaled_sum_error, scaling_gamma
from normtheory.precision.toolkit.sums import positive_sum_error, probabilistic_sum_error


@dataclass(frozen=True)
class StatisticError:
    mean_err: np.ndarray  # Δ: bound on |μ̂ − μ| per row (0 without a mean)
    value: np.ndarray  # the exact statistic under the root (σ², q, ...) per row
    err: np.ndarray  # bound on the computed statistic's error per row


def row_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, biased variance) per row, in binary64."""
    mu = x.mean(axis=1)
    var = ((x - mu[:, None]) ** 2).mean(axis=1)
    return mu, var


def statistic_underflow(x: np.ndarray, ctx: BoundContext) -> float:
    """(n + 4)·η: the underflow of the statistic's roundings (n terms, the sum, eps, the scaling)."""
    return (x.shape[1] + 4) * ctx.eta


def mean_error(x: np.ndarray, ctx: BoundContext) -> np.ndarray:
    """Δ, the bound on |μ̂ − μ| with μ̂ = fl(fl(Σx)·fl(1/d)) (step 1).

    Worst case: γ_{h+2}·mean|x|. Probabilistic: the sum's error is a martingale over its
    roundings (toolkit/sums.py: half-ulp increments at the exact partial sums, the drift of
    the computed operands from them bounded in the tree or by stopping in a chain) — the
    partial sums of a cancelling row are far below Σ|x|, which is where γ̃·Σ|x| was loose.
    When γ_h is large the γ̃_h·Σ|x| form can be smaller: the smaller of the two is used, which
    fails with at most the sum of the two failure probabilities (a union bound). The two
    roundings of the scaling stay worst-case (γ₂; none when d is a power of two).
    """
    rows, n = x.shape
    h = ctx.model.reduction_depth(n)
    abs_x = np.abs(x)
    if not ctx.probabilistic:
        return ctx.gamma(h + 2) * abs_x.mean(axis=1) + 2 * ctx.eta  # the scaling by fl(1/d) may underflow
    # DAZ: the kernel sums the loaded x' (subnormals flushed); this bounds |μ̂ − mean x'|, and
    # bounds/normalized.py adds |mean x' − μ| ≤ η_in
    x = ctx.loaded(x)
    gamma2 = scaling_gamma(n, ctx.u)
    sum_error = np.minimum(probabilistic_sum_error(x, ctx), ctx.gamma(h) * abs_x.sum(axis=1))
    return ((1 + gamma2) * sum_error + gamma2 * np.abs(x.sum(axis=1))) / n + 2 * ctx.eta


def two_pass_variance_error(x: np.ndarray, ctx: BoundContext, d: int) -> StatisticError:
    """LayerNorm two-pass, steps 1–2: |var̂ − σ²| ≤ γ_{h+5}(σ² + Δ²) + Δ²; probabilistic: one
    martingale over the subtractions' and the tree's roundings."""
    rows, n = x.shape
    h, u = ctx.model.reduction_depth(n), ctx.u
    mu, var = row_stats(x)
    delta = mean_error(x, ctx)
    err = ctx.gamma(h + 5) * (var + delta**2) + delta**2
    if ctx.probabilistic:
        # Ŝ − S = n·δμ² + Σ(c_i + δμ)²(2δ_i + δ_i²) + the tree's Σδ'_k·w_k (Σc = 0): the
        # subtraction roundings δ_i and the tree's δ'_k are one martingale (after the first
        # pass, on the event that Δ holds: a union bound with the mean's failure probability)
        # (DAZ: of the loaded x', as in mean_error; bounds/normalized.py adds var' − var)
        loaded = ctx.loaded(x)
        mu_l, var_l = row_stats(loaded)
        dev = np.abs(loaded - mu_l[:, None]) + delta[:, None]
        terms = dev**2 * (1 + u) ** 2
        # the subtractions' Azuma radius λ·sqrt(Σ(2u·dev²)²), written as λ·2u·sqrt(Σdev⁴)
        subtraction = ctx.lam * u * 2 * np.sqrt((dev**4).sum(axis=1))
        tree = positive_sum_error(terms, ctx)
        err_sum = n * delta**2 + u * u * (dev**2).sum(axis=1) + np.hypot(subtraction, tree)
        err = np.minimum(err, scaled_sum_error(err_sum, var_l * n, n, u))
    return StatisticError(delta, var, err + statistic_underflow(x, ctx))


def one_pass_variance_error(x: np.ndarray, ctx: BoundContext, d: int) -> StatisticError:
    """One-pass: var̂ = fl(q̂ − μ̂²), |var̂ − σ²| ≤ γ_{h+5}(q + (|μ| + Δ)²) + (1 + γ₂)·Δ(2|μ| + Δ)."""
    h, g = ctx.model.reduction_depth(x.shape[1]), ctx.gammas
    mu, var = row_stats(x)
    delta = mean_error(x, ctx)
    q = (x * x).mean(axis=1)
    big = np.abs(mu) + delta
    err = g(h + 5) * (q + big**2) + (1 + g(2)) * delta * (2 * np.abs(mu) + delta) + statistic_underflow(x, ctx)
    return StatisticError(delta, var, err)
