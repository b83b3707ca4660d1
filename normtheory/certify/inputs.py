"""Seeded inputs for certification: the structured families (normtheory.families) with
random weights, biases and upstream gradients, every row kept inside the certified domain
|x| ≤ max_abs, plus captured activations given with --inputs (a .npy array, or the array `x`
of a .npz; values of the input format or its raw bits, or any floats with --round-inputs)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from normtheory.arrays import decode, read_array
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


@dataclass(frozen=True)
class CapturedInputs:
    """Activations given with --inputs, read and checked before any kernel runs."""

    path: str
    values: np.ndarray  # (rows, n), float64 values of the input format
    rounded: int = 0  # entries --round-inputs changed
    rounding_note: str | None = None  # what --round-inputs did, for the certificate's findings


def load_captured(path: str, *, n: int, fmt: FloatFormat, round_inputs: bool = False) -> CapturedInputs:
    """Rows from --inputs: a .npy array or the array `x` of a .npz, as values or raw bits of
    `fmt`; values that are not `fmt` values are refused, or rounded with `round_inputs`."""
    raw = read_array(path, "x", require_name=True, label="--inputs")
    if raw.dtype.kind == "f" and round_inputs:
        values, note, changed = _rounded(raw, fmt, path)
    else:
        values = _exact_values(raw, fmt, path)
        note, changed = None, 0
    values = np.atleast_2d(values)
    values = values.reshape(-1, values.shape[-1])
    if values.shape[1] != n:
        raise UsageError(f"--inputs {path}: activations have {values.shape[1]} entries per row, the kernel takes {n}")
    if values.shape[0] == 0:
        raise UsageError(f"--inputs {path}: no rows")
    if not np.isfinite(values).all():
        raise UsageError(f"--inputs {path}: activations must be finite"
                         + (f" (some overflow {fmt.name} when rounded)" if round_inputs else ""))
    return CapturedInputs(path, values, changed, note)


def _exact_values(raw: np.ndarray, fmt: FloatFormat, path: str) -> np.ndarray:
    if raw.dtype.kind == "f" and raw.size:
        values = raw.astype(np.float64)
        representable = fmt.is_representable(values)
        if not representable.all():
            bad = int(np.count_nonzero(~representable))
            first = float(values.ravel()[int(np.flatnonzero(~representable.ravel())[0])])
            raise UsageError(f"--inputs {path}: {bad} of {values.size} values are not {fmt.name} values (e.g. "
                             f"{first!r}, a {raw.dtype} array); store them in {fmt.name} or add --round-inputs "
                             f"to round them to {fmt.name}")
        return values
    try:
        return decode(raw, fmt, "--inputs")
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _rounded(raw: np.ndarray, fmt: FloatFormat, path: str) -> tuple[np.ndarray, str, int]:
    values = raw.astype(np.float64)
    rounded = fmt.round_to_float64(values)
    changed = int(np.count_nonzero(~((rounded == values) | (np.isnan(rounded) & np.isnan(values)))))
    note = (f"--round-inputs: {changed} of {values.size} values of {path} ({raw.dtype}) were not {fmt.name} values "
            f"and were rounded to nearest {fmt.name}")
    return rounded, note, changed


def captured_batches(captured: CapturedInputs, *, fmt, w_fmt, affine, seed: int, max_rows: int, backward: bool,
                     fused: bool = False):
    """The first `max_rows` captured rows, with seeded weights, biases and upstream gradients
    (and, for a fused kernel, a zero residual: the captured rows are what it normalizes)."""
    rng = np.random.default_rng([seed, 10_000])
    values = captured.values[: max(1, max_rows)]
    w, b = draw_affine(rng, values.shape[1], w_fmt, affine)
    gy = fmt.round_to_float64(rng.standard_normal(values.shape), saturate=True) if backward else None
    yield Batch(values, w, b, gy, np.zeros_like(values) if fused else None, label="captured")


def scaled_rows(rng, rows: int, n: int, fmt: FloatFormat, magnitude: float) -> np.ndarray:
    """Normal rows rescaled so that max |x| is `magnitude` (rounded to fmt): the probes of the
    safe-domain bisection."""
    z = rng.standard_normal((rows, n))
    z /= np.max(np.abs(z), axis=1, keepdims=True)
    exponent = math.floor(math.log2(magnitude))
    return fmt.round_to_float64(np.ldexp(z * (magnitude / 2.0**exponent), exponent), saturate=True)
