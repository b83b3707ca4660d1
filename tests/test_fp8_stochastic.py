"""Stochastic rounding: unbiasedness and variance, with thresholds from the binomial / CLT.

Each check is |statistic − expectation| ≤ Z·(its standard deviation), Z = 5: under the normal
approximation (N ≥ 10^4 draws, N·f·(1 − f) ≥ 10^3) a correct implementation fails one check
with probability 5.7·10^-7; seeds are fixed, so the outcome is deterministic in CI. Every check
is also run on a wrong variant (too few random bits, round-to-nearest) and must reject it.
"""

from __future__ import annotations

import numpy as np
import pytest

from normtheory.formats import FORMATS
from normtheory.precision.lowprecision.stochastic import sequential_sum, sr_variance_bound, stochastic_round

Z = 5.0
BF16, E4 = FORMATS["bf16"], FORMATS["fp8_e4m3fn"]
N = 200_000


def up_fraction_ok(draws, x, lower, q, f) -> bool:
    """Binomial test: the count of 'up' outcomes is N·f within Z standard deviations."""
    ups = np.count_nonzero(draws > lower)
    assert np.all((draws == lower) | (draws == lower + q)), "SR must return one of the two neighbours"
    return abs(ups - N * f) <= Z * np.sqrt(N * f * (1 - f))


def variance_ok(draws, q, f) -> bool:
    """Two-point variable: the biased sample variance is q²·p̂(1 − p̂) exactly (p̂ the 'up'
    frequency), and |p̂(1 − p̂) − f(1 − f)| ≤ |1 − 2f|·δ + δ² when |p̂ − f| ≤ δ = Z·sqrt(f(1−f)/N)
    (the binomial bound above): so the variance check follows from the same Z."""
    delta = Z * np.sqrt(f * (1 - f) / N)
    return abs(np.var(draws) - q * q * f * (1 - f)) <= q * q * (abs(1 - 2 * f) * delta + delta**2)


@pytest.mark.parametrize("fmt,f", [(BF16, 0.1), (BF16, 0.5), (BF16, 0.9), (E4, 0.3), (E4, 0.75)])
def test_single_rounding_is_unbiased_with_the_right_variance(fmt, f):
    lower = 1.5
    q = fmt.ulp(lower)
    x = lower + f * q
    draws = stochastic_round(np.full(N, x), fmt, np.random.default_rng(1))
    assert up_fraction_ok(draws, x, lower, q, f)
    assert abs(draws.mean() - x) <= Z * q * np.sqrt(f * (1 - f) / N)
    assert variance_ok(draws, q, f)


def test_negative_values_and_representable_values():
    draws = stochastic_round(np.full(N, -(1.5 + 0.25 * BF16.ulp(1.5))), BF16, np.random.default_rng(2))
    assert up_fraction_ok(-draws, None, 1.5, BF16.ulp(1.5), 0.25)
    exact = BF16.round_to_float64(np.random.default_rng(3).standard_normal(1000))
    assert np.array_equal(stochastic_round(exact, BF16, np.random.default_rng(4)), exact)


def test_too_few_random_bits_and_nearest_rounding_are_rejected():
    """The same tests on wrong variants: 2 random bits give P(up) = ceil(4f)/4 = 0.25 ≠ 0.1;
    round-to-nearest never goes up at f = 0.1."""
    lower, q, f = 1.5, BF16.ulp(1.5), 0.1
    x = lower + f * q
    biased = stochastic_round(np.full(N, x), BF16, np.random.default_rng(1), random_bits=2)
    assert not up_fraction_ok(biased, x, lower, q, f)
    assert not variance_ok(biased, q, f)
    nearest = BF16.round_to_float64(np.full(N, x))
    assert not up_fraction_ok(nearest, x, lower, q, f)


def test_sr_accumulation_is_unbiased_where_nearest_stagnates():
    """4096 addends in [0.5, 1) summed sequentially in bf16 over T independent trials: the SR sum's
    mean is the exact sum within Z·sqrt(V/T), V = Σ q_k²/4 (martingale bound), and its sample
    variance stays below V (1 + Z·sqrt(2/(T − 1))); RNE loses most of the sum (stagnation)."""
    rng = np.random.default_rng(5)
    addends = BF16.round_to_float64(rng.uniform(0.5, 1.0, 4096))
    trials = 400
    exact = addends.sum()  # exact: bf16 values, float64 partial sums stay exact at this size
    sr = sequential_sum(np.broadcast_to(addends, (trials, addends.size)), BF16, mode="stochastic", rng=rng)
    V = sr_variance_bound(2 * np.cumsum(addends), BF16)  # q at twice each exact partial sum
    assert abs(sr.mean() - exact) <= Z * np.sqrt(V / trials)
    assert np.var(sr, ddof=1) <= V * (1 + Z * np.sqrt(2 / (trials - 1)))
    nearest = sequential_sum(addends[None, :], BF16, mode="nearest")[0]
    assert nearest < exact / 4  # bf16 RNE stops growing once half an ulp exceeds every addend (256)
    # and the same mean test rejects a 2-bit SR accumulator (biased up at every step)
    biased = sequential_sum(np.broadcast_to(addends, (trials, addends.size)), BF16, mode="stochastic",
                            rng=np.random.default_rng(6), random_bits=2)
    assert abs(biased.mean() - exact) > Z * np.sqrt(V / trials)
