"""Reductions happen in the stated order, checked against scalar np.float32 loops written here."""

import numpy as np
import pytest

from normtheory.formats import FORMATS
from normtheory.precision.emulation.arith import Arith
from normtheory.precision.emulation.reductions import tree_sum, welford
from normtheory.precision.models import Model


def _scalar_tree_sum(row, lanes):
    """The documented order, in float32 scalars: lane t sums t, t+L, ...; then a butterfly."""
    lane_sums = [np.float32(0.0)] * lanes
    for j, value in enumerate(row):
        lane_sums[j % lanes] = np.float32(lane_sums[j % lanes] + np.float32(value))
    while len(lane_sums) & (len(lane_sums) - 1):
        lane_sums.append(np.float32(0.0))
    while len(lane_sums) > 1:
        half = len(lane_sums) // 2
        lane_sums = [np.float32(lane_sums[t] + lane_sums[t + half]) for t in range(half)]
    return float(lane_sums[0])


@pytest.mark.parametrize("lanes", [1, 3, 32, None])
def test_tree_sum_follows_the_stated_order(lanes):
    rng = np.random.default_rng(4)
    # magnitudes spread over 2^30 make every order give a different float32 sum
    rows = FORMATS["fp32"].round_to_float64(rng.standard_normal((5, 77)) * 2.0 ** rng.integers(-15, 15, (5, 77)))
    model = Model("t", lanes=lanes)
    got = tree_sum(rows, Arith("fp32"), model)
    want = [_scalar_tree_sum(row, model.lane_count(77)) for row in rows]
    np.testing.assert_array_equal(got, want)
    other = [_scalar_tree_sum(row, 2) for row in rows]
    assert lanes == 2 or not np.array_equal(got, other)


def test_bf16_sequential_sum_stagnates_and_the_tree_does_not():
    """The docs/theory.md §Reduction order example: 4096 bf16 ones summed in bf16."""
    ones = np.ones((1, 4096))
    assert tree_sum(ones, Arith("bf16"), Model("s", acc="bf16", lanes=1))[0] == 256.0
    assert tree_sum(ones, Arith("bf16"), Model("p", acc="bf16", lanes=None))[0] == 4096.0


def _scalar_welford(row, lanes):
    f = np.float32
    count, mean, m2 = [0] * lanes, [f(0)] * lanes, [f(0)] * lanes
    for j, x in enumerate(row):
        t = j % lanes
        count[t] += 1
        delta = f(f(x) - mean[t])
        mean[t] = f(mean[t] + f(delta / f(count[t])))
        m2[t] = f(m2[t] + f(delta * f(f(x) - mean[t])))
    while len(count) & (len(count) - 1):
        count.append(0), mean.append(f(0)), m2.append(f(0))
    while len(count) > 1:
        half = len(count) // 2
        new = []
        for t in range(half):
            na, nb = count[t], count[t + half]
            total = na + nb
            share = f(nb / total) if total else f(0)
            weight = f(na * nb / total) if total else f(0)
            delta = f(mean[t + half] - mean[t])
            new.append((total, f(mean[t] + f(delta * share)), f(f(m2[t] + m2[t + half]) + f(f(delta * delta) * weight))))
        count, mean, m2 = [c for c, _, _ in new], [m for _, m, _ in new], [s for _, _, s in new]
    return float(mean[0]), float(m2[0])


@pytest.mark.parametrize("lanes", [1, 4, 5])
def test_welford_follows_the_stated_order(lanes):
    rng = np.random.default_rng(5)
    rows = FORMATS["fp32"].round_to_float64(100 + rng.standard_normal((4, 23)))
    mean, m2 = welford(rows, Arith("fp32"), Model("w", stats="welford", lanes=lanes, fma=False))
    want = np.array([_scalar_welford(row, lanes) for row in rows])
    np.testing.assert_array_equal(mean, want[:, 0])
    np.testing.assert_array_equal(m2, want[:, 1])


def test_welford_is_exact_on_small_integers():
    row = np.array([[3.0, 7.0, 1.0, 9.0, 5.0, 5.0, 2.0, 8.0]])
    mean, m2 = welford(row, Arith("fp32"), Model("w", stats="welford", lanes=4))
    assert mean[0] == 5.0 and m2[0] == float(((row - 5.0) ** 2).sum())
