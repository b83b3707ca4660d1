"""Measure where an Lp kernel fails, and its errors against the exact value, on real torch runs.

Used by the tests and by `normtheory lp` to put a measured threshold next to each predicted
one (lp/thresholds.py). Failure means what an overflowed or underflowed sum produces: a
non-finite output, or an all-zero output on a nonzero row (lp_thresholds.naive_failures).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from normtheory.formats import FORMATS, FloatFormat
from normtheory.kernels.dtypes import TORCH_DTYPES
from normtheory.precision.bounds.lp import stable_forward_bound
from normtheory.precision.measure import absolute_errors
from normtheory.reference import correctly_rounded, evaluate
from normtheory.theory.lp.thresholds import naive_failures


def _fmt(fmt) -> FloatFormat:
    return FORMATS[fmt] if isinstance(fmt, str) else fmt


def run_kernel(kernel, x: np.ndarray, fmt, eps: float, p: float, **params) -> np.ndarray:
    """The kernel's output on rows x (values of `fmt`), as float64."""
    dtype = TORCH_DTYPES[_fmt(fmt).name]
    out = kernel(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(dtype), None, None, eps, p, **params)
    return out.to(torch.float64).numpy()


def fails_on_constant_row(kernel, value: float, d: int, fmt, eps: float, p: float, **params) -> bool:
    x = np.full((1, d), value)
    return bool(naive_failures(run_kernel(kernel, x, fmt, eps, p, **params), x)[0])


def _bits(fmt: FloatFormat, value: float) -> int:
    return int(fmt.to_bits(np.array([value]))[0])


def _value(fmt: FloatFormat, bits: int) -> float:
    return float(fmt.to_float64(fmt.from_bits(np.array([bits], dtype=fmt.bits_dtype)))[0])


def _first_change(fmt: FloatFormat, lo: int, hi: int, fails_at) -> int:
    """Bisect the bit patterns (they order positive values) for the first pattern in (lo, hi]
    whose outcome differs from lo's, given that hi's differs. A failure set that is not an
    interval would be reported at one of its edges only, so callers check neighbours."""
    outcome_lo = fails_at(_value(fmt, lo))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fails_at(_value(fmt, mid)) == outcome_lo:
            lo = mid
        else:
            hi = mid
    return hi


def smallest_failing_magnitude(kernel, d: int, fmt, eps: float, p: float, low=None, **params) -> float | None:
    """Smallest X ≥ `low` (default: the smallest subnormal) of `fmt` on which a constant row of
    X fails; None when nothing fails up to the largest finite value."""
    fmt = _fmt(fmt)
    fails_at = lambda v: fails_on_constant_row(kernel, v, d, fmt, eps, p, **params)  # noqa: E731
    lo, hi = _bits(fmt, fmt.min_subnormal if low is None else low), _bits(fmt, fmt.max_finite)
    if fails_at(_value(fmt, lo)):
        return _value(fmt, lo)
    if not fails_at(_value(fmt, hi)):
        return None
    return _value(fmt, _first_change(fmt, lo, hi, fails_at))


def largest_failing_magnitude(kernel, d: int, fmt, eps: float, p: float, high: float, **params) -> float | None:
    """Largest X ≤ `high` of `fmt` (from the smallest subnormal up) on which a constant row of
    X fails, given that `high` passes; None when the smallest subnormal passes too."""
    fmt = _fmt(fmt)
    fails_at = lambda v: fails_on_constant_row(kernel, v, d, fmt, eps, p, **params)  # noqa: E731
    lo, hi = _bits(fmt, fmt.min_subnormal), _bits(fmt, high)
    if fails_at(_value(fmt, hi)):
        raise ValueError(f"the kernel fails at high = {high}")
    if not fails_at(_value(fmt, lo)):
        return None
    return _value(fmt, _first_change(fmt, lo, hi, fails_at) - 1)


def binade_rows(fmt, d: int, rows_per_binade: int, step: int, seed: int) -> np.ndarray:
    """Rows of `fmt` spread over its whole finite range: for every `step`-th binade from the
    smallest subnormal to the largest, `rows_per_binade` rows whose maximum lies in that binade
    (Gaussian, one spike among tiny values, constant), plus the largest-finite constant row."""
    fmt = _fmt(fmt)
    rng = np.random.default_rng(seed)
    exponents = np.arange(fmt.emin - fmt.precision + 1, fmt.emax + 1, step)
    blocks = []
    for e in exponents:
        top = math.ldexp(1.0, int(e))
        gauss = rng.standard_normal((rows_per_binade, d))
        gauss *= top / np.abs(gauss).max(axis=1, keepdims=True) * rng.uniform(1, 2, (rows_per_binade, 1))
        spike = rng.standard_normal((1, d)) * top * 2.0**-20
        spike[0, rng.integers(d)] = top * 1.5
        blocks += [gauss, spike, np.full((1, d), top * 1.25)]
    blocks.append(np.full((1, d), fmt.max_finite))
    x = fmt.round_to_float64(np.concatenate(blocks), saturate=True)
    return x


def ulp_errors(computed: np.ndarray, rounded_reference: np.ndarray, fmt) -> np.ndarray:
    """|ŷ − ŷ_CR| in ulps of the output format at the correctly rounded value (NaN = NaN: 0)."""
    fmt = _fmt(fmt)
    computed = np.asarray(computed, dtype=np.float64)
    reference = fmt.to_float64(rounded_reference)
    both_nan = np.isnan(computed) & np.isnan(reference)
    with np.errstate(invalid="ignore"):
        err = np.abs(computed - reference) / fmt.ulp(reference)
    return np.where(both_nan, 0.0, np.where(np.isnan(err), np.inf, err))


def stable_error_survey(kernel, fmt, p: float, d: int, eps: float, *, seed: int = 0, step: int = 1,
                        rows_per_binade: int = 2, affine: str = "none") -> dict:
    """Run `kernel` on rows spread over the whole finite range of `fmt` (binade_rows) and judge
    it: worst |ŷ − y| / bound (y exact, from the arbitrary-precision reference), worst ulps
    against the correctly rounded result, and the rows whose output is not finite."""
    fmt = _fmt(fmt)
    x = binade_rows(fmt, d, rows_per_binade, step, seed)
    rng = np.random.default_rng(seed + 1)
    w = b = None
    if affine != "none":
        w = fmt.round_to_float64(rng.uniform(-2, 2, d))
        b = fmt.round_to_float64(rng.uniform(-1, 1, d)) if affine == "weight_bias" else None
    dtype = TORCH_DTYPES[fmt.name]
    as_t = lambda a: None if a is None else torch.from_numpy(a).to(dtype)  # noqa: E731
    y = kernel(as_t(x), as_t(w), as_t(b), eps, p).to(torch.float64).numpy()
    exact = evaluate("lpnorm", x, w, b, eps=eps, affine=affine, p=p, prec=96)["y"]
    bound = stable_forward_bound(x, w, b, p=p, eps=eps, affine=affine, out_format=fmt).total
    errors = absolute_errors(y, exact)
    rounded = correctly_rounded("lpnorm", x, w, b, format=fmt, eps=eps, affine=affine, p=p)["y"]
    ulps = ulp_errors(y, rounded, fmt)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(errors == 0, 0.0, errors / bound)
    worst = int(np.argmax(ulps.max(axis=1)))
    return {
        "rows": int(x.shape[0]),
        "max_err_over_bound": float(ratio.max()),
        "max_ulps": float(ulps.max()),
        "worst_row_max_abs": float(np.abs(x[worst]).max()),
        "nonfinite_rows": int((~np.isfinite(y).all(axis=1)).sum()),
        "infinite_bounds": int((~np.isfinite(bound)).sum()),
    }
