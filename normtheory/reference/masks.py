"""Where non-finite inputs (and 0/0 rows) make an output NaN: shared by both evaluation paths."""

from __future__ import annotations

import numpy as np

from normtheory.reference.formulas import row_is_nan
from normtheory.registry import NormParams

CHUNK_ROWS = 64  # rows per vectorized numpy block: keeps temporaries in cache


def nan_rows_of(params: NormParams, x: np.ndarray) -> np.ndarray:
    """Rows whose outputs are all NaN: a non-finite entry, or 0/0 (degenerate with eps = 0)."""
    rows = x.shape[0]
    nan_rows = np.concatenate([~np.isfinite(x[i:i + CHUNK_ROWS]).all(axis=1) for i in range(0, rows, CHUNK_ROWS)])
    if params.eps == 0:
        nan_rows |= np.array([row_is_nan(params, row) for row in x], dtype=bool)
    return nan_rows


def nan_mask(kind, nan_rows, nan_rows_gx, bad_columns, shape):
    """Where an output is NaN because a non-finite input (or a 0/0 row) reaches it; None if nowhere."""
    if not (nan_rows.any() or np.any(nan_rows_gx) or bad_columns.any()):
        return None
    if kind == "y":
        return nan_rows[:, None] | bad_columns[None, :]
    if kind == "gx":
        # a bad weight column enters every gx of the row through Σ g·ŷ
        return np.broadcast_to(nan_rows_gx[:, None] | bad_columns.any(), shape)
    column_bad = bad_columns | np.any(nan_rows_gx)
    return np.broadcast_to(column_bad[None, :], shape)
