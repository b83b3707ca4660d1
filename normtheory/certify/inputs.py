"""Seeded inputs for certification: the structured families (normtheory.families) with
random weights, biases and upstream gradients, every row kept inside the certified domain
|x| ≤ max_abs, plus captured activations given with --inputs."""

from __future__ import annotations

import math

import numpy as np

from normtheory.arrays import decode
from normtheory.certify.runner import Batch
from normtheory.errors import UsageError
from normtheory.families import FAMILIES
from normtheory.formats import FloatFormat

WEIGHT_MAX = 64.0  # |w|, |b| up to 64: real checkpoints hold such weights (issue 5)


def default_max_abs(fmt: FloatFormat) -> float:
    """The default domain: |x| ≤ min(largest finite of the format, 2^20)."""
    return min(fmt.max_finite, 2.0**20)


def clip_to_domain(rows: np.ndarray, max_abs: float, fmt: FloatFormat) -> np.ndarray:
    """Rows scaled down by a power of two until max |x| ≤ max_abs, then rounded to fmt: the
    scaling is exact except for entries it pushes into fmt's subnormals, which the rounding
    puts back on fmt's grid (monotone, so the row's peak stays ≤ a representable max_abs)."""
    peak = np.max(np.abs(rows), axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        shift = np.where(peak > max_abs, np.ceil(np.log2(peak / max_abs)), 0.0)
    return fmt.round_to_float64(np.ldexp(rows, -shift.astype(np.int64)), saturate=True)


def draw_affine(rng, n: int, w_fmt: FloatFormat, affine: str):
    """(w, b) for the affine mode: random signs and magnitudes 2^U(-3, 6) (up to 64)."""
    def magnitudes():
        return rng.choice([-1.0, 1.0], size=n) * np.minimum(2.0 ** rng.uniform(-3, 6, size=n), WEIGHT_MAX)

    w = w_fmt.round_to_float64(magnitudes(), saturate=True) if affine in ("weight", "weight_bias", "offset_weight") else None
    b = w_fmt.round_to_float64(magnitudes(), saturate=True) if affine == "weight_bias" else None
    return w, b


def family_rows(family: str, rng, rows: int, n: int, fmt: FloatFormat, max_abs: float) -> np.ndarray:
    raw = FAMILIES[family](rng, rows, n, fmt)
    return clip_to_domain(fmt.round_to_float64(raw, saturate=True), max_abs, fmt)


def family_batches(families, *, rows_per_family: int, n: int, fmt, w_fmt, affine, max_abs, seed: int,
                   fused: bool, backward: bool):
    """One Batch per family, each with its own weights and seed (so a family can be rerun alone)."""
    for index, family in enumerate(families):
        rng = np.random.default_rng([seed, index])
        x = family_rows(family, rng, rows_per_family, n, fmt, max_abs)
        w, b = draw_affine(rng, n, w_fmt, affine)
        gy = fmt.round_to_float64(rng.standard_normal(x.shape), saturate=True) if backward else None
        residual = None
        if fused:
            # split each row into x_part + residual with x_part rounded: the kernel's sum is then
            # fl(x_part + residual), which the certifier checks bit for bit (correct rounding)
            x = x / 2  # exact; keeps x_part + residual clear of overflow
            residual = fmt.round_to_float64(x * rng.uniform(0.0, 1.0, size=x.shape), saturate=True)
            x = clip_to_domain(fmt.round_to_float64(x - residual, saturate=True), max_abs, fmt)
        yield Batch(x, w, b, gy, residual, label=family)


def captured_batches(path: str, *, n: int, fmt, w_fmt, affine, seed: int, max_rows: int, backward: bool):
    """Rows from --inputs ACTS.npz (array `x` or the first array; values or raw bits of fmt)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            if not names:
                raise UsageError(f"{path}: no arrays")
            raw = data["x"] if "x" in names else data[names[0]]
    except UsageError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"{path}: cannot read activations ({exc})") from None
    values = decode(raw, fmt, "inputs")
    if values.ndim == 1:
        values = values.reshape(1, -1)
    values = values.reshape(-1, values.shape[-1])
    if values.shape[1] != n:
        raise UsageError(f"{path}: activations have {values.shape[1]} entries per row, the kernel takes {n}")
    if not np.isfinite(values).all():
        raise UsageError(f"{path}: activations must be finite")
    rng = np.random.default_rng([seed, 10_000])
    values = values[: max(1, max_rows)]
    w, b = draw_affine(rng, n, w_fmt, affine)
    gy = fmt.round_to_float64(rng.standard_normal(values.shape), saturate=True) if backward else None
    yield Batch(values, w, b, gy, None, label="captured")


def scaled_rows(rng, rows: int, n: int, fmt: FloatFormat, magnitude: float) -> np.ndarray:
    """Normal rows rescaled so that max |x| is `magnitude` (rounded to fmt): the probes of the
    safe-domain bisection."""
    z = rng.standard_normal((rows, n))
    z /= np.max(np.abs(z), axis=1, keepdims=True)
    exponent = math.floor(math.log2(magnitude))
    return fmt.round_to_float64(np.ldexp(z * (magnitude / 2.0**exponent), exponent), saturate=True)
