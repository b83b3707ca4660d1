"""Error bound of a normalizer with a scaled fp8 (or fp6/fp4) output.

What is bounded: the dequantized output q/s of a kernel that computes the normalizer in fp32
(ŷ, the pre-cast result), multiplies by its scale s in fp32 and casts (scaling.py's
convention), against the exact y. Per entry, with Y = |y| + E_pre an upper bound on |ŷ|:

  E_pre  bound on |ŷ − y|: `normtheory.precision.tolerance(..., out_format="fp32")` — the
         fp32 kernel's own error (its rounding to fp32 included).
  fl32(ŷ·s) = ŷ·s + δ,  |δ| ≤ u32·Y·s + η32            (one fp32 multiply)
  T = Y·s·(1 + u32) + η32 ≥ |fl32(ŷ·s)|
  cast error c: u_f·T + η_f while T ≤ fmax (RNE: half an ulp, ≤ u_f·|t| in the normal
         range, ≤ η_f = half the smallest subnormal below it);
         saturating cast (and fp6/fp4, which always saturate): an entry with |t| > fmax
         becomes ±fmax (RNE lands there or overflow saturates to it), so its error is
         |t| − fmax ≤ T − fmax, and c ≤ max(u_f·T + η_f, T − fmax);
         non-saturating cast: no overflow while T < fmax + ulp(fmax)/2 (below the midpoint
         RNE stays finite); at or beyond it the entry may become inf/NaN: no bound (inf).
  |q/s − y| ≤ E_pre + (u32·Y·s + η32)/s + c/s.

The scale s is the one the kernel returned (per entry, expanded from its groups); whether
that scale is the recipe's scale is a separate check (`scale_interval`). Every term is
evaluated in binary64 and multiplied by SAFETY (1 + 2^-20) as in bounds/forward.py.
"""

from __future__ import annotations

import numpy as np

from normtheory.formats import FORMATS, FloatFormat, as_format
from normtheory.precision.toolkit.rounding import SAFETY

FP32 = FORMATS["fp32"]


def cast_error_bound(T, fmt: FloatFormat, *, saturate: bool) -> np.ndarray:
    """Bound on |cast(t) − t| over |t| ≤ T (scaled domain), inf where the cast may overflow."""
    T = np.asarray(T, dtype=np.float64)
    u, eta, fmax = fmt.unit_roundoff, fmt.min_subnormal / 2, fmt.max_finite
    rounding = u * T + eta
    if saturate or not (fmt.has_inf or fmt.has_nan):
        return np.maximum(rounding, T - fmax)
    overflow_at = fmax + fmt.ulp(fmax) / 2
    with np.errstate(invalid="ignore"):
        return np.where(T < overflow_at, rounding, np.inf)


def scaled_output_bound(exact_abs, pre, entry_scale, fmt, *, saturate: bool) -> np.ndarray:
    """Per-entry bound on |q/s − y| from |y|, the pre-cast bound and the per-entry scale."""
    fmt = as_format(fmt)
    u32, eta32 = FP32.unit_roundoff, FP32.min_subnormal / 2
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        Y = np.asarray(exact_abs, dtype=np.float64) * (1 + 2.0**-52) + pre  # |y| known to 2^-53
        s = np.asarray(entry_scale, dtype=np.float64)
        T = Y * s * (1 + u32) + eta32
        total = pre + (u32 * Y * s + eta32) / s + cast_error_bound(T, fmt, saturate=saturate) / s
        bad = ~np.isfinite(total) | ~(s > 0) | ~np.isfinite(s)
    return np.where(bad, np.inf, total * SAFETY)
