"""The Welford adjoint bound as bounds/welford.py evaluated it before it was vectorized: one
lane step at a time, every charge added to the running sums as it is made. The vectorized
`welford_errors` must give the same bits (tests/test_precision_welford_vectorized.py); this copy
is the oracle, kept verbatim (the running exact M, which no bound reads, included) except for
LANE_CHARGE_ORDER, which lets a test reorder a lane step's charges (a wrong variant: the same
terms added in another order, which moves the last bits). The merge levels' record and their
reverse step, which the vectorizing did not change, are welford.py's own (_MergeStep,
_reverse_merge): what this oracle checks is the lane steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from normtheory.precision.bounds.welford import WelfordErrors, _MergeStep, _reverse_merge  # unchanged by the vectorizing
from normtheory.precision.toolkit.context import BoundContext
from normtheory.precision.toolkit.martingale import azuma_radius
from normtheory.precision.toolkit.rounding import binade
from normtheory.precision.toolkit.tree import lane_slices, pad_lanes

LANE_CHARGE_ORDER = (0, 1, 2, 3, 4)  # e1..e5 of a lane step, in the order they are added

@dataclass
class _Running:
    """The forward sweep's state per lane: exact running values and worst-case error bounds."""

    count: np.ndarray  # (lanes,) entries so far
    mean: np.ndarray  # (rows, lanes) exact running means
    m2: np.ndarray  # exact running M
    m2_top: np.ndarray  # an upper bound on the computed M̂
    err: np.ndarray  # worst-case |m̂ − m| per lane
    second: np.ndarray  # (rows,) the second-order terms so far


@dataclass(frozen=True)
class _LaneStep:
    """One step of every lane, as the reverse sweep needs it."""

    width: int  # the lanes it touches
    delta: np.ndarray  # the exact δ = x − m
    mags: tuple  # bounds on the exact results of its roundings e1..e5
    j: np.ndarray  # the count after the step
    after: np.ndarray  # the exact x − m'
    extra: np.ndarray | None  # without FMA: the product's own rounding


def stepwise_welford_errors(x: np.ndarray, ctx: BoundContext, *, x_range: np.ndarray, x_scale: np.ndarray) -> WelfordErrors:
    """Per row: (worst |μ̂ − μ|, probabilistic |μ̂ − μ|, worst |M̂ − M|, probabilistic |M̂ − M|)
    for the model's Welford over rows x (the values the kernel loads).

    x_range ≥ max x − min x (with the rounding margins of `welford_variance_error`), x_scale ≥
    max |x|·(1 + 2u)/(1 − u) (how far a rounded running mean may be from zero).
    """
    u, eta = ctx.u, ctx.eta
    per_mean_step = u * x_scale + eta  # the rounding of a new mean, at most
    head = (2 * u + u * u) * x_range  # the two roundings of (x − m̂)/j, relative to the range
    state, steps = _lane_steps(x, ctx, head=head, per_mean_step=per_mean_step)
    steps += _merge_levels(state, ctx, x_range=x_range, per_mean_step=per_mean_step)
    linear, squares, flush, deterministic = _reverse_sweep(steps, ctx, rows=x.shape[0])
    worst = linear + flush + deterministic
    prob = azuma_radius(squares, ctx.lam) + flush + deterministic
    worst[1] += state.second
    prob[1] += state.second
    return WelfordErrors(worst[0], prob[0], worst[1], prob[1])


def _lane_steps(x: np.ndarray, ctx: BoundContext, *, head: np.ndarray,
                per_mean_step: np.ndarray) -> tuple[_Running, list[_LaneStep | _MergeStep]]:
    """The forward sweep through the lanes: exact running values, worst-case error bounds, and
    what the reverse sweep needs of every step."""
    u, eta = ctx.u, ctx.eta
    rows, n = x.shape
    lanes = ctx.model.lane_count(n)
    state = _Running(count=np.zeros(lanes), mean=np.zeros((rows, lanes)), m2=np.zeros((rows, lanes)),
                     m2_top=np.zeros((rows, lanes)), err=np.zeros((rows, lanes)), second=np.zeros(rows))
    steps: list[_LaneStep | _MergeStep] = []
    for cols in lane_slices(n, lanes):
        width = cols.stop - cols.start
        state.count[:width] += 1
        j = state.count[:width]
        xv = x[:, cols]
        m_prev, e_prev = state.mean[:, :width], state.err[:, :width]
        delta = xv - m_prev
        m_new = m_prev + delta / j
        after = xv - m_new
        e_new = np.where(j > 1, head[:, None] + per_mean_step[:, None] * (j + 1) / 2, 0.0)
        d_err = e_prev + u * (np.abs(delta) + e_prev) + eta  # |δ̂ − δ|
        a_err = e_new + u * (np.abs(after) + e_new) + eta  # |â − a|
        state.second += np.where(j > 1, d_err * a_err, 0.0).sum(axis=1)  # the first step is exact
        product_top = (np.abs(delta) + d_err) * (np.abs(after) + a_err)
        mags = (np.abs(delta) + e_prev,  # e1: fl(x − m̂)
                (np.abs(delta) + d_err) / j,  # e2: fl(δ̂/j)
                (np.abs(m_new) + e_new) / (1 - u),  # e3: fl(m̂ + q̂)
                np.abs(after) + e_new,  # e4: fl(x − m̂')
                product_top * (1 + u) + state.m2_top[:, :width])  # e5: fl(δ̂·â + M̂) (FMA, or the sum)
        extra = product_top if not ctx.model.fma else None  # the product's own rounding
        steps.append(_LaneStep(width, delta, mags, j=j.copy(), after=after, extra=extra))
        state.m2_top[:, :width] = (state.m2_top[:, :width] + product_top * (1 + u)) * (1 + u) + eta
        state.mean[:, :width], state.m2[:, :width], state.err[:, :width] = m_new, state.m2[:, :width] + delta * after, e_new
    return state, steps


def _merge_levels(state: _Running, ctx: BoundContext, *, x_range: np.ndarray,
                  per_mean_step: np.ndarray) -> list[_LaneStep | _MergeStep]:
    """The forward sweep through Chan's merges (lanes padded to a power of two)."""
    u, eta, acc = ctx.u, ctx.eta, ctx.acc
    count = pad_lanes(state.count)
    mean, m2, m2_top, err = (pad_lanes(v) for v in (state.mean, state.m2, state.m2_top, state.err))
    gamma3 = 3 * u / (1 - 3 * u)
    steps: list[_LaneStep | _MergeStep] = []
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
        mean, m2, err, count = m_new, m2[:, :half] + m2[:, half:] + delta**2 * weight, e_new, total
    return steps


def _reverse_sweep(steps: list[_LaneStep | _MergeStep], ctx: BoundContext, *,
                   rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Adjoints of μ (index 0) and M (index 1) along the same steps, last first: (Σ|coefficient|·h,
    Σ(coefficient·(h − η))² — the Azuma norms, η stays worst-case —, Σ|coefficient|·η, the merge
    constants' systematic part), each (2, rows)."""
    u, eta = ctx.u, ctx.eta
    adj_m = np.zeros((2, rows, 1))
    adj_m[0] = 1.0
    adj_big = np.zeros((2, rows, 1))
    adj_big[1] = 1.0
    linear = np.zeros((2, rows))  # Σ|coefficient|·h
    squares = np.zeros((2, rows))  # Σ(coefficient·(h − η))², the Azuma norms (η stays worst-case)
    flush = np.zeros((2, rows))  # Σ|coefficient|·η

    def charge(coef: np.ndarray, magnitude: np.ndarray) -> None:
        bound = u * binade(magnitude)
        linear[:] += (np.abs(coef) * bound).sum(axis=2)
        squares[:] += ((coef * bound) ** 2).sum(axis=2)
        flush[:] += np.abs(coef).sum(axis=2) * eta

    deterministic = np.zeros((2, rows))
    for step in reversed(steps):
        if isinstance(step, _MergeStep):
            adj_m, adj_big = _reverse_merge(step, adj_m, adj_big, charge, deterministic)
        else:
            adj_m = _reverse_lane(step, adj_m, adj_big, charge)
    return linear, squares, flush, deterministic


def _reverse_lane(step: _LaneStep, adj_m: np.ndarray, adj_big: np.ndarray,
                  charge: Callable[[np.ndarray, np.ndarray], None]) -> np.ndarray:
    """One lane step backwards: charge its roundings e1..e5 (and the unfused product's)."""
    j, width, mags = step.j, step.width, step.mags
    live = (j > 1).astype(float)  # a lane's first step (m̂ = x, â = 0, M̂ = 0) rounds nothing
    am, aM = adj_m[:, :, :width], adj_big[:, :, :width]
    grad_after = aM * step.delta
    am_total = am - grad_after
    grad_delta = aM * step.after + am_total / j
    charges = ((grad_delta, mags[0]), (am_total, mags[1]), (am_total, mags[2]), (grad_after, mags[3]), (aM, mags[4]))
    for coef, mag in (charges[index] for index in LANE_CHARGE_ORDER):
        charge(coef * live, mag)
    if step.extra is not None:
        charge(aM * live, step.extra)
    adj_m = adj_m.copy()
    adj_m[:, :, :width] = am_total - grad_delta
    return adj_m
