"""Element-by-element judgement of one output against its reference and bound.

The reference r is the exact value correctly rounded to fp32, so |r − exact| ≤ ½ulp₃₂(r).
An element violates the bound B only when that is proven: |got − r| − ½ulp₃₂(r) > B. The
reported ratio is that proven lower bound on the error over B (0 when nothing is proven);
a violation is a ratio above 1. A kernel value that is not finite where the exact value is
finite in the output format, or a number where the exact value is NaN, is a violation too.
Elements where the contract gives no bound (B = inf) are counted, not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from normtheory.formats import FORMATS, FloatFormat

FP32 = FORMATS["fp32"]


@dataclass
class QuantityResult:
    """The judgement of one output (y, gx, gw, gb, h)."""

    name: str
    fmt: FloatFormat
    shape: tuple[int, ...]
    elements: int
    violations: int
    max_ratio: float  # largest proven error / bound (inf for a non-finite or NaN mismatch)
    unbounded: int = 0  # elements without a bound (not judged)
    worst: dict = field(default_factory=dict)  # index, got, exact, error, ulps, bound, ratio
    rows: list[int] = field(default_factory=list)  # rows (or columns for gw/gb) with violations
    row_count: int = 0
    row_label: str = "row"
    detail: str = ""  # what the bound is (e.g. "cast-before-weight semantics"), for the message

    @property
    def failed(self) -> bool:
        return self.violations > 0


def judge_elements(name: str, got: np.ndarray, exact: np.ndarray, bound: np.ndarray, out_fmt: FloatFormat,
                   shape: tuple[int, ...], *, entry_scale: np.ndarray | None = None,
                   accept: np.ndarray | None = None) -> QuantityResult:
    """`got`, `exact` (fp32 correctly rounded) and `bound` are float64 arrays of one shape.

    `entry_scale` (fp8 outputs): got is q/s and an ulp is the format's ulp at y·s, over s.
    `accept`: elements whose value is accepted whatever it is (a cast allowed to overflow).
    """
    got = np.asarray(got, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        bound = np.where(np.isnan(bound), np.inf, np.asarray(bound, dtype=np.float64))
        exact_nan = np.isnan(exact)
        both_finite = np.isfinite(got) & np.isfinite(exact)
        error = np.where(both_finite, np.abs(got - exact), 0.0)
        resolution = 0.5 * FP32.ulp(np.where(np.isfinite(exact), exact, 0.0))
        proven = np.maximum(error - resolution, 0.0)
        ratio = np.where(proven == 0, 0.0, proven / bound)  # bound 0 and proven > 0: inf
        if entry_scale is None:
            # exact values beyond the output format's range: inf (or NaN) is the right answer
            expected_finite = np.isfinite(out_fmt.round_to_float64(np.where(exact_nan, 0.0, exact)))
        else:
            expected_finite = np.isfinite(exact)
    nonfinite = ~np.isfinite(got) & expected_finite & ~exact_nan
    nan_mismatch = exact_nan & ~np.isnan(got)
    bad_value = nonfinite | nan_mismatch
    if accept is not None:
        bad_value &= ~accept
        ratio = np.where(accept, 0.0, ratio)
    ratio = np.where(bad_value, np.inf, ratio)
    unbounded = np.isfinite(exact) & ~np.isfinite(bound) & ~bad_value
    ratio = np.where(unbounded, 0.0, ratio)
    violating = ratio > 1
    result = QuantityResult(name, out_fmt, tuple(shape), int(got.size), int(np.count_nonzero(violating)),
                            float(ratio.max()) if ratio.size else 0.0, int(np.count_nonzero(unbounded)))
    if ratio.size:
        flat = int(np.argmax(ratio.ravel()))
        ulp = out_fmt.ulp(exact.ravel()[flat] * (1.0 if entry_scale is None else entry_scale.ravel()[flat]))
        ulp = ulp / (1.0 if entry_scale is None else entry_scale.ravel()[flat])
        result.worst = {
            "index": tuple(int(i) for i in np.unravel_index(flat, shape)),
            "got": float(got.ravel()[flat]), "exact": float(exact.ravel()[flat]),
            "error": float(error.ravel()[flat]), "ulps": float(error.ravel()[flat] / ulp) if np.isfinite(ulp) else np.nan,
            "bound": float(bound.ravel()[flat]), "ratio": float(ratio.ravel()[flat]),
            "kind": "not finite" if nonfinite.ravel()[flat] else ("NaN expected" if nan_mismatch.ravel()[flat] else ""),
        }
    set_rows(result, violating)
    return result


def set_rows(result: QuantityResult, violating: np.ndarray) -> None:
    """The rows (for a 1-D quantity such as gw: the columns) that hold violations."""
    if not violating.any():
        return
    if violating.ndim >= 2:
        per_row = violating.reshape(-1, violating.shape[-1]).any(axis=1)
    else:
        per_row, result.row_label = violating.ravel(), "column"
    indices = np.flatnonzero(per_row)
    result.row_count = int(indices.size)
    result.rows = [int(i) for i in indices[:12]]


def judge_exact_match(name: str, got: np.ndarray, expected: np.ndarray, fmt: FloatFormat,
                      shape: tuple[int, ...], detail: str) -> QuantityResult:
    """A quantity with no rounding freedom (the fused residual output h): equal, NaN for NaN."""
    with np.errstate(invalid="ignore"):
        differ = ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
    result = QuantityResult(name, fmt, tuple(shape), int(got.size), int(np.count_nonzero(differ)),
                            float("inf") if differ.any() else 0.0, detail=detail)
    if differ.any():
        flat = int(np.flatnonzero(differ.ravel())[0])
        error = abs(float(got.ravel()[flat]) - float(expected.ravel()[flat]))
        result.worst = {"index": tuple(int(i) for i in np.unravel_index(flat, shape)),
                        "got": float(got.ravel()[flat]), "exact": float(expected.ravel()[flat]),
                        "error": error, "ulps": error / float(fmt.ulp(expected.ravel()[flat])),
                        "bound": 0.0, "ratio": float("inf"), "kind": "differs"}
    set_rows(result, differ.reshape(shape))
    return result
