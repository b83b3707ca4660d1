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


BLOCK_ROWS = 512  # rows judged at a time: temporaries stay small enough for malloc to reuse


@dataclass
class _Block:
    """One block's judgement, merged into a QuantityResult by `judge_elements`."""

    ratio: np.ndarray
    error: np.ndarray
    bound: np.ndarray
    unbounded: int
    kinds: tuple  # (nonfinite, nan_mismatch, wrong_scale) masks


@dataclass
class _Elements:
    """The arrays one judgement reads, each of got's shape (or None where not given)."""

    got: np.ndarray
    exact: np.ndarray
    bound: np.ndarray
    entry_scale: np.ndarray | None = None
    accept: np.ndarray | None = None
    wrong_scale: np.ndarray | None = None
    resolution: np.ndarray | None = None

    def rows(self, block: slice) -> _Elements:
        """The same arrays restricted to a block of rows (a 1-D judgement is one block)."""
        if self.got.ndim != 2:
            return self
        cut = lambda a: None if a is None else a[block]  # noqa: E731
        return _Elements(self.got[block], self.exact[block], self.bound[block], cut(self.entry_scale),
                         cut(self.accept), cut(self.wrong_scale), cut(self.resolution))


def _judge_block(part: _Elements, out_fmt: FloatFormat) -> _Block:
    got, exact, resolution = part.got, part.exact, part.resolution
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        bound = np.where(np.isnan(part.bound), np.inf, part.bound)
        exact_nan = np.isnan(exact)
        both_finite = np.isfinite(got) & np.isfinite(exact)
        error = np.where(both_finite, np.abs(got - exact), 0.0)
        if resolution is None:  # the reference's own error: half an fp32 ulp
            resolution = 0.5 * FP32.ulp(np.where(np.isfinite(exact), exact, 0.0))
        proven = np.maximum(error - resolution, 0.0)
        ratio = np.where(proven == 0, 0.0, proven / bound)  # bound 0 and proven > 0: inf
        if part.entry_scale is None:
            # exact values beyond the output format's range: inf (or NaN) is the right answer
            expected_finite = np.isfinite(out_fmt.round_to_float64(np.where(exact_nan, 0.0, exact)))
        else:
            expected_finite = np.isfinite(exact)
    nonfinite = ~np.isfinite(got) & expected_finite & ~exact_nan
    nan_mismatch = exact_nan & ~np.isnan(got)
    bad_value = nonfinite | nan_mismatch
    if part.accept is not None:
        bad_value &= ~part.accept
        ratio = np.where(part.accept, 0.0, ratio)
    if part.wrong_scale is not None:
        bad_value |= part.wrong_scale
    ratio = np.where(bad_value, np.inf, ratio)
    unbounded = np.isfinite(exact) & ~np.isfinite(bound) & ~bad_value
    ratio = np.where(unbounded, 0.0, ratio)
    return _Block(ratio, error, bound, int(np.count_nonzero(unbounded)), (nonfinite, nan_mismatch, part.wrong_scale))


def _float64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _optional(a: np.ndarray | None, *, mask: bool = False) -> np.ndarray | None:
    """A float64 copy of an optional array; masks (accept, wrong_scale) stay boolean."""
    if a is None:
        return None
    return np.asarray(a, dtype=bool) if mask else _float64(a)


def judge_elements(name: str, got: np.ndarray, exact: np.ndarray, bound: np.ndarray, out_fmt: FloatFormat,
                   shape: tuple[int, ...], *, entry_scale: np.ndarray | None = None,
                   accept: np.ndarray | None = None, wrong_scale: np.ndarray | None = None,
                   resolution: np.ndarray | None = None) -> QuantityResult:
    """`got`, `exact` (fp32 correctly rounded) and `bound` are float64 arrays of one shape,
    (rows, n) or (n,); `shape` is the caller's shape, for reporting indices.

    `entry_scale` (fp8 outputs): got is q/s and an ulp is the format's ulp at y·s, over s.
    `accept`: elements whose value is accepted whatever it is (a cast allowed to overflow).
    `wrong_scale`: elements whose fp8 group scale the recipe cannot give (violations).
    `resolution`: the reference's error where it is not half an fp32 ulp of `exact`.
    """
    elements = _Elements(_float64(got), _float64(exact), _float64(bound), _optional(entry_scale),
                         _optional(accept, mask=True), _optional(wrong_scale, mask=True), _optional(resolution))
    two_dimensional = elements.got.ndim == 2
    rows = elements.got.shape[0] if two_dimensional else 1
    blocks = [slice(i, i + BLOCK_ROWS) for i in range(0, rows, BLOCK_ROWS)] if two_dimensional else [slice(None)]
    result = QuantityResult(name, out_fmt, tuple(shape), int(elements.got.size), 0, 0.0)
    violating_rows = []
    best: tuple[slice, _Block, _Elements] | None = None
    for block in blocks:
        part = elements.rows(block)
        judged = _judge_block(part, out_fmt)
        violating = judged.ratio > 1
        result.violations += int(np.count_nonzero(violating))
        result.unbounded += judged.unbounded
        violating_rows.append(violating.any(axis=1) if violating.ndim == 2 else violating)
        if judged.ratio.size and (best is None or judged.ratio.max() > best[1].ratio.max()):
            best = (block, judged, part)
    if best is not None:
        _set_worst(result, *best, out_fmt, shape)
    _set_rows(result, np.concatenate(violating_rows), one_dimensional=not two_dimensional)
    return result


def _set_worst(result: QuantityResult, block: slice, judged: _Block, part: _Elements, out_fmt: FloatFormat,
               shape: tuple[int, ...]) -> None:
    got, exact = part.got, part.exact
    flat = int(np.argmax(judged.ratio.ravel()))
    offset = (block.start or 0) * got.shape[-1] if got.ndim == 2 else 0
    scale = part.entry_scale.ravel()[flat] if part.entry_scale is not None else 1.0
    ulp = out_fmt.ulp(exact.ravel()[flat] * scale) / scale
    error = float(judged.error.ravel()[flat])
    result.max_ratio = float(judged.ratio.ravel()[flat])
    result.worst = {
        "index": tuple(int(i) for i in np.unravel_index(offset + flat, shape)),
        "got": float(got.ravel()[flat]), "exact": float(exact.ravel()[flat]), "error": error,
        "ulps": error / ulp if np.isfinite(ulp) else float("nan"),
        "bound": float(judged.bound.ravel()[flat]), "ratio": result.max_ratio, "kind": _kind(flat, *judged.kinds),
    }


def _kind(flat: int, nonfinite, nan_mismatch, wrong_scale) -> str:
    if nonfinite.ravel()[flat]:
        return "not finite"
    if nan_mismatch.ravel()[flat]:
        return "NaN expected"
    if wrong_scale is not None and wrong_scale.ravel()[flat]:
        return "its group's scale is not one the recipe gives"
    return ""


def _set_rows(result: QuantityResult, per_row: np.ndarray, one_dimensional: bool) -> None:
    """The rows (for a 1-D quantity such as gw: the columns) that hold violations."""
    if one_dimensional:
        result.row_label = "column"
    if not per_row.any():
        return
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
    differ = differ.reshape(-1, differ.shape[-1]) if differ.ndim > 1 else differ
    _set_rows(result, differ.any(axis=1) if differ.ndim == 2 else differ, one_dimensional=differ.ndim < 2)
    return result
