"""LayerNorm and RMSNorm to formats of at most 24 significand bits, in three tiers:

1. rowpass.forward_rows: every row in parallel, float64 with a rigorous bound per element;
   decides nearly every element.
2. midpoint.decide_near_midpoints: elements whose interval straddles one rounding boundary,
   decided by the sign of a polynomial in double-word arithmetic (eps-dominated rows,
   near-constant rows, fp16 at large offsets).
3. ziv.SlowEvaluator: arb balls (Ziv) and exact Q(√R) arithmetic for whatever is left.

The backward pass (gx, gw, gb) takes ŷ and its bound from tier 1 and proceeds as in api.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from normtheory.formats import FloatFormat
from normtheory.reference import fastpath
from normtheory.reference.decide import decide_interval
from normtheory.reference.masks import CHUNK_ROWS, nan_mask, nan_rows_of
from normtheory.reference.rowpass import DECIDED, forward_rows
from normtheory.reference.threads import run_blocks
from normtheory.reference.ziv import SlowEvaluator
from normtheory.registry import NormParams


@dataclass
class Outcome:
    values: dict  # kind -> rounded values (y: fmt.dtype or float32, rowpass.py; float64 otherwise)
    escalated: dict = field(default_factory=dict)  # kind -> elements decided by arb / exact arithmetic
    midpoint_tier: int = 0  # y elements decided by the double-word tier
    invalid: np.ndarray | None = None  # per row: values of x not representable in the format


@dataclass
class _Inputs:
    params: NormParams
    fmt: FloatFormat
    x: np.ndarray  # float64; with a backward pass, NaN rows are zeroed (finite statistics)
    w: np.ndarray
    b: np.ndarray
    gy: np.ndarray | None
    d: int
    bad_columns: np.ndarray
    nan_rows: np.ndarray
    nan_rows_gx: np.ndarray


def compute(params: NormParams, fmt: FloatFormat, x, w, b, gy, d: int, *, all_slow: bool, check_x: bool) -> Outcome:
    """Correctly rounded y (and gx, gw, gb given gy); `all_slow` sends every element to arb."""
    bad_columns = ~(np.isfinite(w) & np.isfinite(b))
    if bad_columns.any():  # NaN columns are set at the end; 1 and 0 keep the arithmetic finite
        w, b = np.where(bad_columns, 1.0, w), np.where(bad_columns, 0.0, b)
    nan_rows: np.ndarray | None = None
    nan_rows_gx: np.ndarray | None = None
    if gy is not None:  # the backward statistics need finite rows: NaN rows are computed on zeros
        nan_rows = nan_rows_of(params, x)
        nan_rows_gx = nan_rows | ~np.isfinite(gy).all(axis=1)
        x = np.where(nan_rows[:, None], 0.0, x) if nan_rows.any() else x
        gy = np.where(nan_rows_gx[:, None], 0.0, gy) if nan_rows_gx.any() else gy
    factor, factor_err = fastpath.weight_factor(params, w)
    has_bias = params.affine == "weight_bias"
    x = np.ascontiguousarray(x, dtype=np.float64)
    rounded, status, flags, yn, yn_err, row_stats = forward_rows(
        centred=params.spec.centred, x=x, d=d, eps=params.eps, inside=params.eps_mode == "inside",
        affine=params.affine, w=w, factor=factor, factor_err=factor_err, bias=b if has_bias else np.zeros_like(b),
        has_bias=has_bias, fmt=fmt, check_x=check_x, want_yn=gy is not None, midpoint_tier=not all_slow)
    outcome = Outcome(values={"y": rounded}, invalid=flags[:, 0])
    if check_x and flags[:, 0].any():
        return outcome  # the caller reports the unrepresentable values
    if nan_rows is None or nan_rows_gx is None:  # forward only: the compiled pass found the NaN rows
        nan_rows = nan_rows_gx = flags[:, 1].astype(bool)
    inputs = _Inputs(params, fmt, x, w, b, gy, d, bad_columns, nan_rows, nan_rows_gx)
    slow = SlowEvaluator(params, x, w, b, gy, d, fmt)
    y_mask = nan_mask("y", nan_rows, nan_rows_gx, bad_columns, rounded.shape)
    outcome.midpoint_tier, outcome.escalated["y"] = _resolve_y(inputs, rounded, status, flags, slow, y_mask, all_slow)
    if y_mask is not None:
        rounded[y_mask] = np.nan
    if gy is not None:
        _backward(inputs, yn, yn_err, row_stats, slow, outcome, all_slow)
    return outcome


def _resolve_y(inputs: _Inputs, rounded, status, flags, slow: SlowEvaluator, mask, all_slow: bool) -> tuple[int, int]:
    """Tier 3 for y, in place: every element tiers 1 and 2 left (all of them with `all_slow`).
    Returns (decided by the midpoint tier, escalated to arb).

    The slow path gets, as its float64 estimate, the value in the slot (rowpass.py): it only
    uses it for the sign of an exact zero, and the slot keeps ŷ's sign and whether ŷ = 0.
    """
    if all_slow:
        pending = np.ones(rounded.shape, dtype=bool)
        if mask is not None:
            pending &= ~mask
        rows, cols = np.nonzero(pending)
    else:  # only rows with something left (NaN rows never have: they are decided as NaN)
        open_rows = np.flatnonzero(flags[:, 2])
        pending = status[open_rows] != DECIDED
        if mask is not None:
            pending &= ~mask[open_rows]
        rows, cols = np.nonzero(pending)
        rows = open_rows[rows]
    for i, j in zip(rows.tolist(), cols.tolist()):
        rounded[i, j] = slow.decide("y", i, j, float(rounded[i, j]))
    return int(flags[:, 3].sum()), int(rows.size)


def _quiet():
    """0/0 rows and overflowing bounds are expected here (masked or escalated later)."""
    return np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore")


def _backward(inputs: _Inputs, yn, yn_err, row_stats, slow: SlowEvaluator, outcome: Outcome, all_slow: bool) -> None:
    """gx per block of rows (blocks on the reference's threads), gw and gb as column sums
    (api.py's derivation), then the slow path. The blocks are fixed (CHUNK_ROWS) and their
    column sums added in block order, so nothing depends on the thread count."""
    gy = inputs.gy
    assert gy is not None
    rows, n = yn.shape
    gx = np.empty((rows, n))
    starts = list(range(0, rows, CHUNK_ROWS))
    parts: list = [None] * len(starts)

    def work(first: int, last: int) -> None:
        with _quiet():  # numpy's error state is per thread
            for k in range(first, last):
                parts[k] = _gx_block(inputs, yn, yn_err, row_stats, gx, starts[k], all_slow)

    run_blocks(work, len(starts), min_block=1)
    undecided: dict[str, list] = {"gx": [], "gw": [], "gb": []}
    for pending, *_ in parts:
        undecided["gx"] += pending
    with _quiet():
        gw_sum, gw_err = _column_total(parts)
        gb_hi, gb_lo, gb_bound = fastpath.tree_sum(gy, axis=0)
        # fl(hi + lo) errs by at most u·|result|, and by at most |lo| (hi itself is a float)
        rounding = np.minimum(fastpath.U * np.abs(gb_hi + gb_lo), np.abs(gb_lo))
        columns = {}
        for kind, value, bound in (("gw", gw_sum, gw_err), ("gb", gb_hi + gb_lo, gb_bound + rounding)):
            decided, columns[kind] = decide_interval(value[None, :], (bound * fastpath.SAFETY)[None, :], inputs.fmt)
            _collect(undecided[kind], decided, value[None, :], 0, all_slow)
    outcome.values.update(gx=gx, gw=columns["gw"], gb=columns["gb"])
    for kind, pending in undecided.items():
        outcome.escalated[kind] = _escalate(inputs, kind, outcome.values[kind], pending, slow)


def _gx_block(inputs: _Inputs, yn, yn_err, row_stats, gx, start: int, all_slow: bool):
    """gx of rows start..start + CHUNK_ROWS − 1 (written into gx), its undecided elements, and
    this block's gw column sums as TwoSum words (hi, lo) with a bound on |Σ exact terms − (hi + lo)|:
    the terms' own bounds (fastpath.gw_terms) plus the tree's."""
    gy = inputs.gy
    assert gy is not None
    block = slice(start, min(start + CHUNK_ROWS, yn.shape[0]))
    r, r_rel, rho, rho_rel = (row_stats[block, k:k + 1] for k in range(4))
    stats = fastpath.RowStats(None, None, r, r_rel, rho, rho_rel, None)
    value, bound = fastpath.backward_gx(inputs.params, stats, yn[block], yn_err[block], inputs.w, gy[block], inputs.d)
    decided, gx[block] = decide_interval(value, bound, inputs.fmt)
    pending: list = []
    _collect(pending, decided, value, start, all_slow)
    term, term_err = fastpath.gw_terms(yn[block], yn_err[block], gy[block])
    hi, lo, tree_bound = fastpath.tree_sum(term, axis=0)
    return pending, hi, lo, tree_bound + fastpath.abs_sum(term_err.T)


def _column_total(parts):
    """gw = Σ over blocks of (hi + lo), and its bound: each block's Σ of the terms' own bounds and
    TwoSum-tree bound, the tree over the blocks' words, and the final fl(hi + lo) (as gb's)."""
    words = np.stack([part[1] for part in parts] + [part[2] for part in parts])
    hi, lo, tree_bound = fastpath.tree_sum(words, axis=0)
    value = hi + lo
    rounding = np.minimum(fastpath.U * np.abs(value), np.abs(lo))
    block_bounds = np.stack([part[3] for part in parts])
    total_bound = block_bounds.sum(axis=0) * (1 + (len(parts) + 1) * fastpath.U)
    return value, total_bound + tree_bound + rounding


def _escalate(inputs: _Inputs, kind: str, values, pending: list, slow: SlowEvaluator) -> int:
    """The slow path for one output's undecided elements, then its NaN mask; returns how many."""
    mask = nan_mask(kind, inputs.nan_rows, inputs.nan_rows_gx, inputs.bad_columns, values.shape)
    return slow.decide_pending(kind, values, pending, mask)


def _collect(pending: list, decided, value, row_offset: int, all_slow: bool) -> None:
    if all_slow:
        decided = np.zeros(value.shape, dtype=bool)
    if not decided.all():
        i, j = np.nonzero(~decided)
        pending.append((i + row_offset, j, value[i, j]))
