"""Reductions in an explicit order (the lane layout of models.py, toolkit/tree.py), vectorized over rows.

numpy's own `sum` hides both its order (pairwise blocks of 8) and its accumulation type, so
every reduction here is a Python loop over the reduction index with one rounded operation per
step; only the independent rows are vectorized.
"""

from __future__ import annotations

import numpy as np

from normtheory.precision.emulation.arith import Arith
from normtheory.precision.models import Model
from normtheory.precision.toolkit.tree import butterfly, lane_slices, pad_lanes


def tree_sum(terms: np.ndarray, ar: Arith, model: Model) -> np.ndarray:
    """Σ_j terms[:, j]: sequential within each lane, then a butterfly over lanes."""
    rows, n = terms.shape
    lanes = model.lane_count(n)
    acc = np.zeros((rows, lanes))
    for cols in lane_slices(n, lanes):
        width = cols.stop - cols.start
        acc[:, :width] = ar.add(acc[:, :width], terms[:, cols])
    return butterfly(pad_lanes(acc), ar.add)


def tree_sum_squares(values: np.ndarray, ar: Arith, model: Model) -> np.ndarray:
    """Σ_j values[:, j]² with the square fused into the accumulation when the model contracts."""
    rows, n = values.shape
    lanes = model.lane_count(n)
    acc = np.zeros((rows, lanes))
    for cols in lane_slices(n, lanes):
        width = cols.stop - cols.start
        v = values[:, cols]
        acc[:, :width] = ar.mul_add(v, v, acc[:, :width], model.fma)
    return butterfly(pad_lanes(acc), ar.add)


def welford(values: np.ndarray, ar: Arith, model: Model):
    """Mean and M = Σ(x - mean)² by Welford's update in each lane, merged by Chan's formula.

    Lane update (count k after the step): δ = x - m; m += δ/k; M += δ·(x - m).
    Merge of (na, ma, Ma) and (nb, mb, Mb), n = na + nb: δ = mb - ma; m = ma + δ·(nb/n);
    M = (Ma + Mb) + δ²·(na·nb/n). Every operation is rounded in the accumulator format.
    """
    rows, n = values.shape
    lanes = model.lane_count(n)
    count = np.zeros(lanes)
    mean = np.zeros((rows, lanes))
    m2 = np.zeros((rows, lanes))
    for cols in lane_slices(n, lanes):
        width = cols.stop - cols.start
        count[:width] += 1
        x = values[:, cols]
        delta = ar.sub(x, mean[:, :width])
        mean[:, :width] = ar.add(mean[:, :width], ar.div(delta, count[:width]))
        after = ar.sub(x, mean[:, :width])
        m2[:, :width] = ar.mul_add(delta, after, m2[:, :width], model.fma)
    count, mean, m2 = pad_lanes(count), pad_lanes(mean), pad_lanes(m2)
    while mean.shape[1] > 1:
        half = mean.shape[1] // 2
        na, nb = count[:half], count[half:]
        total = na + nb
        with np.errstate(invalid="ignore", divide="ignore"):
            share_b = ar.round(np.where(total > 0, nb / np.maximum(total, 1), 0.0))
            weight = ar.round(np.where(total > 0, na * nb / np.maximum(total, 1), 0.0))
        ma, mb = mean[:, :half], mean[:, half:]
        delta = ar.sub(mb, ma)
        mean = ar.add(ma, ar.mul(delta, share_b))
        m2 = ar.add(ar.add(m2[:, :half], m2[:, half:]), ar.mul(ar.mul(delta, delta), weight))
        count = total
    return mean[:, 0], m2[:, 0]


def tree_sum_products(a: np.ndarray, b: np.ndarray, ar: Arith, model: Model) -> np.ndarray:
    """Σ_j a[:, j]·b[:, j] in the lane layout of `tree_sum`, each product fused into the
    accumulation when the model contracts (one rounding per step), rounded first otherwise."""
    rows, n = a.shape
    lanes = model.lane_count(n)
    acc = np.zeros((rows, lanes))
    for cols in lane_slices(n, lanes):
        width = cols.stop - cols.start
        acc[:, :width] = ar.mul_add(a[:, cols], b[:, cols], acc[:, :width], model.fma)
    return butterfly(pad_lanes(acc), ar.add)
