"""Error bounds for Welford statistics (emulation/reductions.welford): two forms, the smaller used.

The running-mean recursion and its Cauchy–Schwarz form (`recursion_form`). Lanes of k entries,
t merge levels, exact identity S = Σ_i c_i·δ_i² over all updates, c = (j − 1)/j for a lane
step j and na·nb/n for a merge: every running mean stays in [min x, max x] (rounding is
monotone), so |x − m̂| and |mb − ma| are at most the range R and |m̂| ≤ X. Lane step j:
m̂_j = fl(m̂ + fl(fl(x − m̂)/j)) gives exactly
ε_j = ε_{j−1}(j − 1)/j + (x − m̂)/j·θ₂ + α·(m̂ + q̂) (|θ₂| ≤ 2u + u², |α| ≤ u), so
j|ε_j| ≤ (j − 1)|ε_{j−1}| + (2u + u²)R + j(uX/(1 − u) + η) and, with ε₁ = 0,
|ε_k| ≤ (2u + u²)R + (uX/(1 − u) + η)(k + 1)/2. Merge m̂ = fl(m̂a + fl(fl(m̂b − m̂a)·fl(nb/n))):
m̂ − m = εa(1 − s) + εb·s + (m̂b − m̂a)·s·θ₃ + η + α(m̂a + p̂), so each level adds at most
γ₃R + uX/(1 − u) + η: e ≤ R(2u + u² + tγ₃) + (uX/(1 − u) + η)((k + 1)/2 + t) — the part
proportional to X (what an offset row |mean| ≫ std makes large) is 5× below the former
uX(k/2 + 5 + 8t) at k = 8, t = 5 (proofs/test_bounds_algebra.py checks both recursions). An update's error is
c(2|δ|E + E²) + γ₄·c(|δ| + E)², E = 2e, and by Cauchy–Schwarz
Σ_i |δ_i|·(weights) ≤ sqrt(S)·(sqrt(2n) + 2·sqrt(n·t/4)); the nonnegative updates are summed
with depth k + 2t + 3. That form charges every update the final, largest mean error e and
the Cauchy–Schwarz spread: at k = 8, t = 5 it is ≈ 70·κ∞·u relative, no bound at all from
κ ≈ 3·10⁵ in fp32 (κ∞ = X/sqrt(σ² + eps)).

The adjoint form (`welford_errors`) bounds the same errors through the adjoint of the
recurrence instead (each rounding weighted by how much the exact M and μ depend on its result,
with the running-mean error bounds e_j of each step); both forms are sound and the smaller is
used (`welford_variance_error`). Its relative error is a few κ·u at κ = 10⁴
(tests/test_precision_welford.py). At κ ≈ 10⁶ in fp32 no bound can promise relative accuracy
of the variance (a running mean can stall k/2 ulps from the data, which is σ there): the floor
of step 4 applies (bounds/scale.py).

Why an adjoint. Every operation of the Welford recurrence and of Chan's merge is linear in the
running means, and the update of M is bilinear: δ̂·â with δ̂ = fl(x − m̂), â = fl(x − m̂').
So, writing e_k = fl(ŵ_k) − ŵ_k for the error of the k-th rounding (ŵ_k the exact result of
the operation on the computed operands), exactly
    μ̂ − μ = Σ_k a_k·e_k                                   (the mean chain is linear)
    M̂ − M = Σ_k b_k·e_k + Σ_steps (δ̂ − δ)(â − a) + Σ_merges ŵt·(δ̂ − δ)² + D,
where a_k and b_k are the derivatives of the exact μ and M with respect to the k-th result
(one reverse sweep through the recurrence, at the exact running values: the adjoint), the
middle sums are the only second-order terms (products of two mean errors), and D is what
the merge constants fl(nb/n), fl(na·nb/n) contribute (the same for every row: a systematic
error, bounded worst-case). Proofs: proofs/test_bounds_forward_sharpening.py checks each local
derivative and the exactness of the split on symbolic steps.

Each |e_k| ≤ u·binade(|ŵ_k|) + η (half an ulp; toolkit/rounding.binade), and |ŵ_k| is at most its exact
value plus the worst-case error of its operands (running-mean errors e_j from the recursion
above: e_j ≤ (2u + u²)R + (u·X' + η)(j + 1)/2 in a lane, + γ₃R + u·X' + η per merge).
 - Worst case: |μ̂ − μ| ≤ Σ|a_k|h_k, |M̂ − M| ≤ Σ|b_k|h_k + second order + |D|. This bounds each
   update's error by the running-mean errors and |x − m| directly, with no Cauchy–Schwarz
   step: the mean errors that matter are weighted by the deviations that later updates
   actually multiply them with (Chan, Golub and LeVeque 1983 estimate the relative error of
   updating as about n·κ·u; this form follows the data instead of κ).
 - Probabilistic (the model of Higham and Mary 2019: each rounding's relative error has mean
   zero given the earlier ones; the coefficients a_k, b_k are fixed by the data, so Σa_k·e_k is
   a martingale with increments at most |a_k|h_k): by Azuma–Hoeffding |Σa_k·e_k| ≤ λ·‖a∘h‖
   except with probability 2·exp(−λ²/2), the same for b; the second-order terms, D and the
   underflow terms stay worst-case. Mean and M together fail with at most twice that
   probability (a union bound).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from normtheory.precision.bounds.statistics import StatisticError, row_stats, statistic_underflow
from normtheory.precision.toolkit.context import BoundContext
from normtheory.precision.toolkit.martingale import azuma_radius
from normtheory.precision.toolkit.rounding import binade, scaled_sum_error
from normtheory.precision.toolkit.tree import pad_lanes


class WelfordErrors(NamedTuple):
    mean_worst: np.ndarray  # per row, worst |μ̂ − μ|
    mean_prob: np.ndarray  # probabilistic |μ̂ − μ|
    m2_worst: np.ndarray  # worst |M̂ − M|
    m2_prob: np.ndarray  # probabilistic |M̂ − M|


def welford_variance_error(x: np.ndarray, ctx: BoundContext, d: int) -> StatisticError:
    """Welford statistics: the smaller of the recursion form and the adjoint form, per row."""
    rows, n = x.shape
    u = ctx.u
    mu, var = row_stats(x)
    x_max = np.abs(x).max(axis=1)
    # worst-case in both kinds (module docstring): the X-proportional error is one rounding of the
    # new mean per step, the rest is proportional to the row's range (the running means stay in
    # [min x, max x], up to a rounding: the 2u·X and 4u·X margins); each step may underflow by η
    x_range = x.max(axis=1) - x.min(axis=1) + 4 * u * x_max
    mean_err, err_var = recursion_form(ctx, n=n, d=d, var=var, x_range=x_range, x_max=x_max)
    # the adjoint form, on the loaded x' under DAZ (bounds/normalized.py adds the difference to x);
    # both forms are sound, so the smaller is used
    loaded = ctx.loaded(x)
    scale = np.abs(loaded).max(axis=1) * (1 + 2 * u) / (1 - u)
    adjoint = welford_errors(loaded, ctx, x_range=x_range, x_scale=scale)
    mu_l, var_l = row_stats(loaded)
    mean_err = np.minimum(mean_err, adjoint.mean_worst)
    err_var = np.minimum(err_var, scaled_sum_error(adjoint.m2_worst, var_l * n, n, u))
    if ctx.probabilistic:
        mean_err = np.minimum(mean_err, adjoint.mean_prob)
        err_var = np.minimum(err_var, scaled_sum_error(adjoint.m2_prob, var_l * n, n, u))
    return StatisticError(mean_err, var, err_var + statistic_underflow(x, ctx))


def recursion_form(ctx: BoundContext, *, n: int, d: int, var: np.ndarray, x_range: np.ndarray,
                   x_max: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean error e, variance error) of the running-mean recursion and Cauchy–Schwarz (module docstring)."""
    u, eta, g = ctx.u, ctx.eta, ctx.gammas
    k, t = ctx.model.per_lane(n), ctx.model.tree_levels(n)
    gamma3 = ctx.worst_gamma(3)
    mean_err = (x_range * (2 * u + u * u + t * gamma3)
                + (u * x_max * (1 + 2 * u) / (1 - u) + eta) * ((k + 1) / 2 + t))
    e = 2 * mean_err
    s = d * var
    spread = math.sqrt(2 * n) + 2 * math.sqrt(n * t / 4)
    first = e * np.sqrt(s) * spread + e * e * (n + n * t / 4)
    err_s = first + g(k + 2 * t + 6) * 2 * (s + first)
    err_var = g(1) * var + (1 + g(1)) * err_s / d
    return mean_err, err_var


# ---- the adjoint form -------------------------------------------------------------------------
#
# Evaluation. Every lane takes one step at a time, but only three quantities really recur from
# step to step: the exact running mean (forward), the bound on M̂ (forward) and the adjoint of the
# mean (reverse); the adjoint of M is constant along the lane steps. So each sweep runs its
# recurrence alone, step by step on (rows, lanes) arrays, and everything else — the magnitudes,
# the coefficients, the charges — is computed for all the steps of a block at once. The charges
# are added to the running sums in the order the step-by-step sweep added them (np.add.accumulate
# is sequential, and each charge is the same pairwise sum over the lanes), so the bound is the
# same to the last bit (tests/test_precision_welford_vectorized.py checks it against the
# step-by-step evaluation).

ROW_CHUNK_ELEMENTS = 2**20  # rows are bounded in groups of about this many entries (memory)
CHARGE_CHUNK_ELEMENTS = 2**18  # the reverse sweep's charges are formed for this many (step, lane, row) at once


@dataclass
class _Running:
    """The forward sweep's state per lane: exact running values and worst-case error bounds."""

    count: np.ndarray  # (lanes,) entries so far
    mean: np.ndarray  # (rows, lanes) exact running means
    m2_top: np.ndarray  # an upper bound on the computed M̂
    err: np.ndarray  # worst-case |m̂ − m| per lane
    second: np.ndarray  # (rows,) the second-order terms so far


@dataclass(frozen=True)
class _LaneBlock:
    """Consecutive lane steps of the same width, step-major: arrays (steps, rows, width)."""

    width: int  # the lanes it touches
    j: np.ndarray  # (steps,) the count after each step
    delta: np.ndarray  # the exact δ = x − m
    after: np.ndarray  # the exact x − m'
    mags: tuple[np.ndarray, ...]  # bounds on the exact results of its roundings e1..e5 (and without FMA the product's own)


@dataclass(frozen=True)
class _MergeStep:
    """One merge level, as the reverse sweep needs it."""

    delta: np.ndarray  # the exact δ = mb − ma
    mags: tuple  # bounds on the exact results of its roundings e6..e12
    share_hat: np.ndarray  # fl(nb/n)
    weight_hat: np.ndarray  # fl(na·nb/n)
    active: np.ndarray  # both sides nonempty (a merge with an empty side is exact)
    systematic: tuple  # (|δ|+|δ̂−δ| bound, |ŝ − s|, |ŵt − wt|) for the merge constants


def welford_errors(x: np.ndarray, ctx: BoundContext, *, x_range: np.ndarray, x_scale: np.ndarray) -> WelfordErrors:
    """Per row: (worst |μ̂ − μ|, probabilistic |μ̂ − μ|, worst |M̂ − M|, probabilistic |M̂ − M|)
    for the model's Welford over rows x (the values the kernel loads).

    x_range ≥ max x − min x (with the rounding margins of `welford_variance_error`), x_scale ≥
    max |x|·(1 + 2u)/(1 − u) (how far a rounded running mean may be from zero). Rows are
    independent: they are bounded in groups (ROW_CHUNK_ELEMENTS), which changes no bit.
    """
    rows, n = x.shape
    group = max(1, ROW_CHUNK_ELEMENTS // max(n, 1))
    if rows <= group:
        return _welford_errors(x, ctx, x_range=x_range, x_scale=x_scale)
    parts = [_welford_errors(x[start:start + group], ctx, x_range=x_range[start:start + group],
                             x_scale=x_scale[start:start + group]) for start in range(0, rows, group)]
    return WelfordErrors(*(np.concatenate(columns) for columns in zip(*parts)))


def _welford_errors(x: np.ndarray, ctx: BoundContext, *, x_range: np.ndarray, x_scale: np.ndarray) -> WelfordErrors:
    u, eta = ctx.u, ctx.eta
    per_mean_step = u * x_scale + eta  # the rounding of a new mean, at most
    head = (2 * u + u * u) * x_range  # the two roundings of (x − m̂)/j, relative to the range
    state, blocks = _lane_steps(x, ctx, head=head, per_mean_step=per_mean_step)
    merges = _merge_levels(state, ctx, x_range=x_range, per_mean_step=per_mean_step)
    sums = _Charges(ctx, rows=x.shape[0])
    adj_m, adj_big, deterministic = _reverse_merges(merges, sums, rows=x.shape[0])
    for block in reversed(blocks):
        adj_m = _reverse_lane_block(block, adj_m, adj_big, sums)
    worst = sums.linear + sums.flush + deterministic
    prob = azuma_radius(sums.squares, ctx.lam) + sums.flush + deterministic
    worst[1] += state.second
    prob[1] += state.second
    return WelfordErrors(worst[0], prob[0], worst[1], prob[1])


def _lane_steps(x: np.ndarray, ctx: BoundContext, *, head: np.ndarray,
                per_mean_step: np.ndarray) -> tuple[_Running, list[_LaneBlock]]:
    """The forward sweep through the lanes: exact running values, worst-case error bounds, and
    what the reverse sweep needs of every step. Step j of every lane reads columns j·L … j·L + L − 1
    (toolkit/tree.lane_slices): the full steps form one block, a shorter last step another."""
    rows, n = x.shape
    lanes = ctx.model.lane_count(n)
    state = _Running(count=np.zeros(lanes), mean=np.zeros((rows, lanes)), m2_top=np.zeros((rows, lanes)),
                     err=np.zeros((rows, lanes)), second=np.zeros(rows))
    full, rest = divmod(n, lanes)
    blocks = []
    for start, steps, width in ((0, full, lanes), (full * lanes, 1 if rest else 0, rest)):
        if steps:
            columns = x[:, start:start + steps * width].reshape(rows, steps, width).transpose(1, 0, 2)
            blocks.append(_lane_block(np.ascontiguousarray(columns), state, ctx, head=head, per_mean_step=per_mean_step))
    return state, blocks


def _lane_block(xs: np.ndarray, state: _Running, ctx: BoundContext, *, head: np.ndarray,
                per_mean_step: np.ndarray) -> _LaneBlock:
    """The forward sweep through one block of lane steps (xs: (steps, rows, width)), `state` advanced."""
    u, eta = ctx.u, ctx.eta
    steps, rows, width = xs.shape
    j = state.count[0] + np.arange(1, steps + 1, dtype=np.float64)  # the count after each step
    delta, m_new = _running_means(xs, state.mean[:, :width], j)
    after = xs - m_new
    jj = j[:, None, None]
    e_new = np.broadcast_to(np.where(jj > 1, head[:, None] + per_mean_step[:, None] * (jj + 1) / 2, 0.0), xs.shape)
    e_prev = np.concatenate([state.err[None, :, :width], e_new[:-1]])
    abs_delta, abs_after = np.abs(delta), np.abs(after)
    d_err = e_prev + u * (abs_delta + e_prev) + eta  # |δ̂ − δ|
    a_err = e_new + u * (abs_after + e_new) + eta  # |â − a|
    second = np.where(jj > 1, d_err * a_err, 0.0).sum(axis=2)  # the first step is exact
    state.second = _accumulate(state.second, second)
    product_top = (abs_delta + d_err) * (abs_after + a_err)
    m2_before, m2_after = _m2_tops(product_top * (1 + u), state.m2_top[:, :width], u=u, eta=eta)
    mags: tuple[np.ndarray, ...] = (
        abs_delta + e_prev,  # e1: fl(x − m̂)
        (abs_delta + d_err) / jj,  # e2: fl(δ̂/j)
        (np.abs(m_new) + e_new) / (1 - u),  # e3: fl(m̂ + q̂)
        abs_after + e_new,  # e4: fl(x − m̂')
        m2_before)  # e5: fl(δ̂·â + M̂) (FMA, or the sum)
    if not ctx.model.fma:
        mags += (product_top,)  # the product's own rounding
    state.count[:width] = j[-1]
    state.mean[:, :width], state.err[:, :width], state.m2_top[:, :width] = m_new[-1], e_new[-1], m2_after
    return _LaneBlock(width, j, delta, after, mags)


def _running_means(xs: np.ndarray, start: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(δ = x − m, m' = m + δ/j) of every step: the exact running mean's recurrence, step by step."""
    delta, means = np.empty_like(xs), np.empty_like(xs)
    mean = start
    for step in range(xs.shape[0]):
        np.subtract(xs[step], mean, out=delta[step])
        mean = np.add(mean, delta[step] / j[step], out=means[step])
    return delta, means


def _m2_tops(increments: np.ndarray, start: np.ndarray, *, u: float, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """(the magnitude of fl(δ̂·â + M̂) at every step, the bound on M̂ after the last): M̂ ≤ top,
    top' = (top + |δ̂â|(1 + u))(1 + u) + η, step by step."""
    before = np.empty_like(increments)
    top = start
    for step in range(increments.shape[0]):
        np.add(increments[step], top, out=before[step])
        top = before[step] * (1 + u) + eta
    return before, top


def _accumulate(total: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """total + terms[0] + terms[1] + …, added in that order (what a loop of += gives, bit for bit)."""
    if len(terms) == 0:
        return total
    return np.add.accumulate(np.concatenate([total[None], terms]), axis=0)[-1]


def _merge_levels(state: _Running, ctx: BoundContext, *, x_range: np.ndarray,
                  per_mean_step: np.ndarray) -> list[_MergeStep]:
    """The forward sweep through Chan's merges (lanes padded to a power of two)."""
    u, eta, acc = ctx.u, ctx.eta, ctx.acc
    count = pad_lanes(state.count)
    mean, m2_top, err = (pad_lanes(v) for v in (state.mean, state.m2_top, state.err))
    gamma3 = 3 * u / (1 - 3 * u)
    steps: list[_MergeStep] = []
    while mean.shape[1] > 1:
        half = mean.shape[1] // 2
        na, nb = count[:half], count[half:]
        total = na + nb
        safe = np.maximum(total, 1)
        share = np.where(total > 0, nb / safe, 0.0)
        weight = np.where(total > 0, na * nb / safe, 0.0)
        share_hat, weight_hat = acc.round_to_float64(share), acc.round_to_float64(weight)
        ma, mb = mean[:, :half], mean[:, half:]
        ea, eb = err[:, :half], err[:, half:]
        delta = mb - ma
        d_err = ea + eb + u * (np.abs(delta) + ea + eb) + eta
        e_new = np.maximum(ea, eb) + gamma3 * x_range[:, None] + per_mean_step[:, None]
        e_new = np.where((na > 0) & (nb > 0), e_new, np.maximum(ea, eb))
        state.second += (weight_hat * d_err**2).sum(axis=1)
        m_new = ma + delta * share
        dq_top = (np.abs(delta) + d_err) ** 2
        mags = (np.abs(delta) + ea + eb,  # e6: fl(mb − ma)
                (np.abs(delta) + d_err) * share_hat,  # e7: fl(δ̂·ŝ)
                (np.abs(m_new) + e_new) / (1 - u),  # e8: fl(m̂a + q̂)
                m2_top[:, :half] + m2_top[:, half:],  # e9: fl(M̂a + M̂b)
                dq_top,  # e10: fl(δ̂·δ̂)
                dq_top * (1 + u) * weight_hat,  # e11: fl(p·ŵt)
                m2_top[:, :half] + m2_top[:, half:] + dq_top * (1 + u) ** 2 * weight_hat)  # e12
        active = (na > 0) & (nb > 0)  # a merge with an empty side is exact (δ·0, M + 0)
        steps.append(_MergeStep(delta, mags, share_hat=share_hat, weight_hat=weight_hat, active=active,
                                systematic=(np.abs(delta) + d_err, np.abs(share_hat - share), np.abs(weight_hat - weight))))
        m2_top = (mags[6] * (1 + u) + 2 * eta) * (1 + u)
        mean, err, count = m_new, e_new, total
    return steps


class _Charges:
    """The reverse sweep's running sums, per adjoint (μ: index 0, M: index 1) and row: Σ|coefficient|·h,
    Σ(coefficient·(h − η))² — the Azuma norms, η stays worst-case — and Σ|coefficient|·η."""

    def __init__(self, ctx: BoundContext, *, rows: int):
        self.u, self.eta = ctx.u, ctx.eta
        self.linear, self.squares, self.flush = np.zeros((2, rows)), np.zeros((2, rows)), np.zeros((2, rows))

    def charge(self, coef: np.ndarray, magnitude: np.ndarray) -> None:
        """One rounding per lane, of a result of at most `magnitude`, whose adjoint is `coef` (2, rows, lanes)."""
        bound = self.u * binade(magnitude)
        self.linear += (np.abs(coef) * bound).sum(axis=2)
        self.squares += ((coef * bound) ** 2).sum(axis=2)
        self.flush += np.abs(coef).sum(axis=2) * self.eta

    def add_in_order(self, linear: np.ndarray, squares: np.ndarray, flush: np.ndarray) -> None:
        """Charges already summed over the lanes, (charges, 2, rows), added one after the other."""
        self.linear = _accumulate(self.linear, linear)
        self.squares = _accumulate(self.squares, squares)
        self.flush = _accumulate(self.flush, flush)


def _reverse_merges(merges: list[_MergeStep], sums: _Charges, *,
                    rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjoints of μ (index 0) and M (index 1) back through the merges, last first: (adjoint of
    the lanes' means, of their M, the merge constants' systematic part (2, rows))."""
    adj_m = np.zeros((2, rows, 1))
    adj_m[0] = 1.0
    adj_big = np.zeros((2, rows, 1))
    adj_big[1] = 1.0
    deterministic = np.zeros((2, rows))
    for step in reversed(merges):
        adj_m, adj_big = _reverse_merge(step, adj_m, adj_big, sums.charge, deterministic)
    return adj_m, adj_big, deterministic


def _reverse_merge(step: _MergeStep, adj_m: np.ndarray, adj_big: np.ndarray, charge: Callable[[np.ndarray, np.ndarray], None],
                   deterministic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One merge level backwards: charge its roundings e6..e12 and its constants' systematic errors."""
    am, aM = adj_m, adj_big
    mags = step.mags
    grad_p10 = aM * step.weight_hat
    grad_delta = am * step.share_hat + 2 * step.delta * grad_p10
    act = step.active.astype(float)
    for coef, mag in ((grad_delta, mags[0]), (am, mags[1]), (am, mags[2]), (aM, mags[3]),
                      (grad_p10, mags[4]), (aM, mags[5]), (aM, mags[6])):
        charge(coef * act, mag)
    top_delta, share_err, weight_err = step.systematic
    deterministic += (np.abs(am) * top_delta * share_err + np.abs(aM) * top_delta**2 * weight_err).sum(axis=2)
    return np.concatenate([am - grad_delta, grad_delta], axis=2), np.concatenate([aM, aM], axis=2)


def _reverse_lane_block(block: _LaneBlock, adj_m: np.ndarray, adj_big: np.ndarray, sums: _Charges) -> np.ndarray:
    """A block of lane steps backwards, last step first: the adjoint of the mean step by step (the
    adjoint of M, aM, does not change along lane steps), then every step's charges e1..e5 (and the
    unfused product's), added in the step-by-step order."""
    width = block.width
    aM = adj_big[:, :, :width]
    totals = np.empty((len(block.j), 2) + block.delta.shape[1:])
    am = adj_m[:, :, :width]
    for step in range(len(block.j) - 1, -1, -1):
        am_total = np.subtract(am, aM * block.delta[step], out=totals[step])
        am = am_total - (aM * block.after[step] + am_total / block.j[step])
    chunk = max(1, CHARGE_CHUNK_ELEMENTS // totals[0].size)
    for stop in range(len(block.j), 0, -chunk):
        sums.add_in_order(*_lane_charges(block, totals, aM, sums, steps=slice(max(0, stop - chunk), stop)))
    adj_m = adj_m.copy()
    adj_m[:, :, :width] = am
    return adj_m


def _lane_charges(block: _LaneBlock, totals: np.ndarray, aM: np.ndarray, sums: _Charges, *,
                  steps: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The charges of `steps`, each summed over the lanes, last step first and in each step the
    order e1..e5 (extra): three arrays (charges, 2, rows). A lane's first step (m̂ = x, â = 0,
    M̂ = 0) rounds nothing: its coefficients are multiplied by 0, as the step-by-step sweep did
    (and the others by 1, which changes no bit)."""
    j = block.j[steps][:, None, None, None]
    am_total = totals[steps]
    grad_after = aM * block.delta[steps][:, None]
    grad_delta = aM * block.after[steps][:, None] + am_total / j
    coefs = [grad_delta, am_total, grad_after, np.broadcast_to(aM, am_total.shape)]
    if (j == 1).any():
        live = (j > 1).astype(float)
        coefs = [coef * live for coef in coefs]
    # which coefficient each rounding has: e1 δ, e2 and e3 the new mean, e4 x − m̂', e5 (and the
    # unfused product) M
    abs_coefs = [np.abs(coef) for coef in coefs]
    flushes = [magnitude.sum(axis=3) * sums.eta for magnitude in abs_coefs]
    linear, squares, flush = [], [], []
    for which, mag in zip((0, 1, 1, 2, 3, 3), block.mags):
        weighted = abs_coefs[which] * (sums.u * binade(mag[steps]))[:, None]  # |c|·h, and (c·h)² = (|c|·h)²
        linear.append(weighted.sum(axis=3))
        squares.append((weighted * weighted).sum(axis=3))
        flush.append(flushes[which])
    def in_order(terms: list[np.ndarray]) -> np.ndarray:  # (steps, charges, 2, rows) -> last step first
        return np.stack(terms, axis=1)[::-1].reshape((-1,) + terms[0].shape[1:])

    return in_order(linear), in_order(squares), in_order(flush)
