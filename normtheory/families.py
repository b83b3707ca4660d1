"""Structured input families shared by tests, benchmarks and the certifier.

Each family draws float64 rows that are then rounded to the input format by the caller
(`draw_rows` does both). Families are chosen for the failure modes of docs/theory.md §Failure modes in real kernels:
cancellation (offset), massive activations (outlier), overflow (near_overflow), underflow
and eps-domination (tiny), degenerate statistics (constant, near_constant), sparse rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from normtheory.formats import FloatFormat

FamilyFn = Callable[[np.random.Generator, int, int, FloatFormat], np.ndarray]


def _normal(rng, rows, n, fmt):
    return rng.standard_normal((rows, n))


def _offset(ratio: float) -> FamilyFn:
    """|mean|/std = ratio: the cancellation that breaks one-pass variance."""

    def draw(rng, rows, n, fmt):
        signs = rng.choice([-1.0, 1.0], size=(rows, 1))
        return signs * ratio + rng.standard_normal((rows, n))

    draw.__doc__ = f"normal rows shifted so that |mean|/std = {ratio:g}"
    return draw


def _outlier(rng, rows, n, fmt):
    """A few massive activations (1e3-1e4 x the bulk) per row, as in LLM residual streams."""
    x = rng.standard_normal((rows, n))
    count = max(1, n // 512)
    cols = rng.integers(0, n, size=(rows, count))
    magnitude = 10.0 ** rng.uniform(3, 4, size=(rows, count))
    limit = min(fmt.max_finite / 4, 2.0**20)
    np.put_along_axis(x, cols, np.minimum(magnitude, limit) * rng.choice([-1.0, 1.0], size=(rows, count)), axis=1)
    return x


def _heavy_tail(rng, rows, n, fmt):
    """Student-t with 2 degrees of freedom: infinite variance, many moderate outliers."""
    return np.clip(rng.standard_t(2.0, size=(rows, n)), -fmt.max_finite / 4, fmt.max_finite / 4)


def _near_overflow(rng, rows, n, fmt):
    """Entries close to the format's largest finite value (and to 2**20 for wide formats)."""
    top = min(fmt.max_finite, 2.0**20)
    return top * rng.uniform(0.5, 1.0, size=(rows, n)) * rng.choice([-1.0, 1.0], size=(rows, n))


def _tiny(rng, rows, n, fmt):
    """Subnormal and barely normal entries: the statistics collapse against eps."""
    exponents = rng.uniform(fmt.emin - fmt.precision + 1, fmt.emin + 2, size=(rows, n))
    return 2.0**exponents * rng.choice([-1.0, 1.0], size=(rows, n))


def _constant(rng, rows, n, fmt):
    return np.repeat(rng.standard_normal((rows, 1)) * 4, n, axis=1)


def _near_constant(rng, rows, n, fmt):
    base = np.repeat(rng.standard_normal((rows, 1)) * 4, n, axis=1)
    return base * (1 + fmt.unit_roundoff * 4 * rng.standard_normal((rows, n)))


def _sparse(rng, rows, n, fmt):
    x = rng.standard_normal((rows, n))
    return np.where(rng.random((rows, n)) < 0.95, 0.0, x)


FAMILIES: dict[str, FamilyFn] = {
    "normal": _normal,
    "offset_1e2": _offset(1e2),
    "offset_1e4": _offset(1e4),
    "offset_1e6": _offset(1e6),
    "outlier": _outlier,
    "heavy_tail": _heavy_tail,
    "near_overflow": _near_overflow,
    "tiny": _tiny,
    "constant": _constant,
    "near_constant": _near_constant,
    "sparse": _sparse,
}


def draw_rows(family: str, rng: np.random.Generator, rows: int, n: int, fmt: FloatFormat) -> np.ndarray:
    """Rows of `family`, rounded to `fmt` (saturating, so every value is finite)."""
    raw = FAMILIES[family](rng, rows, n, fmt)
    return fmt.round_to_float64(raw, saturate=True)
