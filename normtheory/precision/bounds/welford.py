"""Error bounds for Welford statistics (reductions.welford) from the adjoint of the recurrence.

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
error, bounded worst-case). Proofs: proofs/test_welford_adjoint.py checks each local
derivative and the exactness of the split on symbolic steps.

Each |e_k| ≤ u·binade(|ŵ_k|) + η (half an ulp; bounds.binade), and |ŵ_k| is at most its exact
value plus the worst-case error of its operands (running-mean errors e_j from the recursion
in bounds/forward.py: e_j ≤ (2u + u²)R + (u·X' + η)(j + 1)/2 in a lane, + γ₃R + u·X' + η per merge).
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

import numpy as np

from normtheory.formats import FORMATS


def _pad(values, width, fill=0.0):
    extra = width - values.shape[-1]
    if extra == 0:
        return values
    pad = np.full(values.shape[:-1] + (extra,), fill)
    return np.concatenate([values, pad], axis=-1)


def welford_errors(x: np.ndarray, model, u: float, eta: float, lam: float, x_range, x_scale):
    """Per row: (worst |μ̂ − μ|, probabilistic |μ̂ − μ|, worst |M̂ − M|, probabilistic |M̂ − M|)
    for the model's Welford over rows x (the values the kernel loads).

    x_range ≥ max x − min x (with the rounding margins of bounds/forward.py), x_scale ≥ max |x|·(1 + 2u)/(1 − u)
    (how far a rounded running mean may be from zero).
    """
    from normtheory.precision.bounds.forward import binade

    acc = FORMATS[model.acc]
    rows, n = x.shape
    lanes = model.lane_count(n)
    per_mean_step = u * x_scale + eta  # the rounding of a new mean, at most
    head = (2 * u + u * u) * x_range  # the two roundings of (x − m̂)/j, relative to the range

    def h(magnitude):  # |e_k| for a rounding whose exact result is at most `magnitude`
        return u * binade(magnitude) + eta

    # ---- forward sweep: exact running values, worst-case error bounds, what the reverse needs
    count = np.zeros(lanes)
    mean = np.zeros((rows, lanes))
    m2 = np.zeros((rows, lanes))
    m2_top = np.zeros((rows, lanes))  # an upper bound on the computed M̂
    err = np.zeros((rows, lanes))  # worst-case |m̂ − m| per lane
    steps = []
    second = np.zeros(rows)
    for start in range(0, n, lanes):
        cols = slice(start, min(start + lanes, n))
        width = cols.stop - cols.start
        count[:width] += 1
        j = count[:width]
        xv = x[:, cols]
        m_prev, e_prev = mean[:, :width], err[:, :width]
        delta = xv - m_prev
        m_new = m_prev + delta / j
        after = xv - m_new
        e_new = np.where(j > 1, head[:, None] + per_mean_step[:, None] * (j + 1) / 2, 0.0)
        d_err = e_prev + u * (np.abs(delta) + e_prev) + eta  # |δ̂ − δ|
        a_err = e_new + u * (np.abs(after) + e_new) + eta  # |â − a|
        second += np.where(j > 1, d_err * a_err, 0.0).sum(axis=1)  # the first step is exact
        product_top = (np.abs(delta) + d_err) * (np.abs(after) + a_err)
        mags = (np.abs(delta) + e_prev,  # e1: fl(x − m̂)
                (np.abs(delta) + d_err) / j,  # e2: fl(δ̂/j)
                (np.abs(m_new) + e_new) / (1 - u),  # e3: fl(m̂ + q̂)
                np.abs(after) + e_new,  # e4: fl(x − m̂')
                product_top * (1 + u) + m2_top[:, :width])  # e5: fl(δ̂·â + M̂) (FMA, or the sum)
        extra = product_top if not model.fma else None  # the product's own rounding
        steps.append(("lane", width, j.copy(), delta, after, mags, extra))
        m2_top[:, :width] = (m2_top[:, :width] + product_top * (1 + u)) * (1 + u) + eta
        mean[:, :width], m2[:, :width], err[:, :width] = m_new, m2[:, :width] + delta * after, e_new

    width = 1 << math.ceil(math.log2(lanes)) if lanes > 1 else 1
    count = _pad(count, width)
    mean, m2, m2_top, err = (_pad(v, width) for v in (mean, m2, m2_top, err))
    gamma3 = 3 * u / (1 - 3 * u)
    systematic = []  # (level index, |δ|+|δ̂−δ| bound, |ŝ − s|, |ŵt − wt|) for the merge constants
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
        second += (weight_hat * d_err**2).sum(axis=1)
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
        steps.append(("merge", half, (share_hat, weight_hat, active), delta, None, mags, None))
        systematic.append((len(steps) - 1, np.abs(delta) + d_err, np.abs(share_hat - share),
                           np.abs(weight_hat - weight)))
        m2_top = (mags[6] * (1 + u) + 2 * eta) * (1 + u)
        mean, m2, err, count = m_new, m2[:, :half] + m2[:, half:] + delta**2 * weight, e_new, total

    # ---- reverse sweep: adjoints of μ (index 0) and M (index 1) along the same steps
    adj_m = np.zeros((2, rows, 1))
    adj_m[0] = 1.0
    adj_big = np.zeros((2, rows, 1))
    adj_big[1] = 1.0
    linear = np.zeros((2, rows))  # Σ|coefficient|·h
    squares = np.zeros((2, rows))  # Σ(coefficient·(h − η))², the Azuma norms (η stays worst-case)
    flush = np.zeros((2, rows))  # Σ|coefficient|·η

    def charge(coef, magnitude):
        bound = u * binade(magnitude)
        linear[:] += (np.abs(coef) * bound).sum(axis=2)
        squares[:] += ((coef * bound) ** 2).sum(axis=2)
        flush[:] += np.abs(coef).sum(axis=2) * eta

    systematic_by_step = {index: rest for index, *rest in systematic}
    deterministic = np.zeros((2, rows))
    for index in range(len(steps) - 1, -1, -1):
        kind, width, info, delta, after, mags, extra = steps[index]
        if kind == "merge":
            share_hat, weight_hat, active = info
            am, aM = adj_m, adj_big
            grad_p10 = aM * weight_hat
            grad_delta = am * share_hat + 2 * delta * grad_p10
            act = active.astype(float)
            for coef, mag in ((grad_delta, mags[0]), (am, mags[1]), (am, mags[2]), (aM, mags[3]),
                              (grad_p10, mags[4]), (aM, mags[5]), (aM, mags[6])):
                charge(coef * act, mag)
            top_delta, share_err, weight_err = systematic_by_step[index]
            deterministic += (np.abs(am) * top_delta * share_err + np.abs(aM) * top_delta**2 * weight_err).sum(axis=2)
            adj_m = np.concatenate([am - grad_delta, grad_delta], axis=2)
            adj_big = np.concatenate([aM, aM], axis=2)
            continue
        j = info
        live = (j > 1).astype(float)  # a lane's first step (m̂ = x, â = 0, M̂ = 0) rounds nothing
        am, aM = adj_m[:, :, :width], adj_big[:, :, :width]
        grad_after = aM * delta
        am_total = am - grad_after
        grad_delta = aM * after + am_total / j
        for coef, mag in ((grad_delta, mags[0]), (am_total, mags[1]), (am_total, mags[2]),
                          (grad_after, mags[3]), (aM, mags[4])):
            charge(coef * live, mag)
        if extra is not None:
            charge(aM * live, extra)
        adj_m = adj_m.copy()
        adj_m[:, :, :width] = am_total - grad_delta
    worst = linear + flush + deterministic
    prob = lam * np.sqrt(squares) + flush + deterministic
    worst[1] += second
    prob[1] += second
    return worst[0], prob[0], worst[1], prob[1]
