"""Stochastic rounding (SR) emulation for low-precision accumulation, as in fp8/bf16 training
research: x is rounded to one of its two neighbours in the format, up with probability equal
to its distance from the lower one in ulps, so E[SR(x)] = x exactly.

For x with lower neighbour a, spacing q (the format's ulp at |x|) and f = (|x| − a)/q:
    SR(x) = sign(x)·(a + q)   with probability f,   sign(x)·a otherwise;
    E[SR(x)] = x,   Var[SR(x)] = q²·f·(1 − f) ≤ q²/4.
A hardware SR unit draws only R random bits: it rounds up iff j·2^-R < f for j uniform in
[0, 2^R), so P(up) = ceil(f·2^R)/2^R — biased upwards by less than 2^-R ulp. `random_bits`
emulates that; the default R = 53 makes P(up) = f exactly whenever f has at most 53
fractional bits (every x whose exponent is at least the format's emin − 53 + p).

Overflow and the non-finite values follow the format's `round_to_float64` (saturating or not).
`sequential_sum` accumulates in the format with RNE or SR after each addition, in a stated
order (index 0, 1, 2, ... along the last axis); every partial sum and addend are values of a
format with p ≤ 24, so each exact sum is exact in float64 while their magnitudes are within
2^29 of each other (otherwise float64 rounds first: a relative 2^-53 perturbation).
"""

from __future__ import annotations

import numpy as np

from normtheory.formats import as_format


def stochastic_round(values, fmt, rng: np.random.Generator, *, random_bits: int = 53,
                     saturate: bool = False) -> np.ndarray:
    """SR of float64 values to `fmt` (values returned as float64)."""
    if not 1 <= random_bits <= 53:
        raise ValueError("random_bits must be in [1, 53]")
    fmt = as_format(fmt)
    x = np.asarray(values, dtype=np.float64)
    magnitude = np.abs(x)
    finite = np.isfinite(x)
    quantum = fmt.ulp(np.where(finite, magnitude, 1.0))
    scaled = np.where(finite, magnitude, 0.0) / quantum  # exact: a power-of-two scaling
    lower = np.floor(scaled)
    fraction = scaled - lower  # exact
    draws = rng.integers(0, 2**random_bits, size=x.shape, dtype=np.uint64).astype(np.float64)
    up = draws * 2.0**-random_bits < fraction
    rounded = np.copysign((lower + up) * quantum, x)
    rounded = np.where(finite, rounded, x)
    # (lower + 1)·q may be 2^(emax+1): the format's convention decides (saturate, inf or NaN)
    return fmt.round_to_float64(rounded, saturate=saturate)


def sequential_sum(values, fmt, *, mode: str = "nearest", rng: np.random.Generator | None = None,
                   random_bits: int = 53) -> np.ndarray:
    """Σ along the last axis, left to right, rounding to `fmt` after every addition."""
    fmt = as_format(fmt)
    x = np.asarray(values, dtype=np.float64)
    if mode not in ("nearest", "stochastic"):
        raise ValueError(f"mode must be 'nearest' or 'stochastic', got {mode!r}")
    if mode == "stochastic" and rng is None:
        raise ValueError("stochastic rounding needs an rng")
    acc = np.zeros(x.shape[:-1])
    for k in range(x.shape[-1]):
        exact = acc + x[..., k]
        if mode == "nearest":
            acc = fmt.round_to_float64(exact)
        else:
            assert rng is not None  # checked above
            acc = stochastic_round(exact, fmt, rng, random_bits=random_bits)
    return acc


def sr_variance_bound(partial_sums_upper, fmt) -> float:
    """Var of an SR sequential sum is at most Σ_k q_k²/4 (the errors are martingale
    differences: each has mean 0 given the past), q_k the ulp at an upper bound of |S_k|."""
    q = as_format(fmt).ulp(np.asarray(partial_sums_upper, dtype=np.float64))
    return float(np.sum(q * q) / 4)
