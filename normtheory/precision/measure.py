"""Errors of computed outputs against the exact value (normtheory.reference.evaluate).

The exact value comes from the arbitrary-precision reference (never from the emulated kernel
under test); the difference ŷ − y is formed in mpmath and only then converted to binary64,
so the measured error is accurate to a relative 2^-53 of itself.
"""

from __future__ import annotations

import mpmath
import numpy as np

from normtheory.reference import evaluate

PREC = 96  # bits: the errors measured are >= 2^-60 relative; 96 bits resolve them exactly enough


def exact_outputs(op, x, w=None, b=None, *, eps, eps_mode="inside", affine="none", gy=None):
    """The reference's exact outputs (object arrays of mpf), rows kept 2-D."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    gy = None if gy is None else np.atleast_2d(np.asarray(gy, dtype=np.float64))
    return evaluate(op, x, w, b, eps=eps, eps_mode=eps_mode, affine=affine, gy=gy, prec=PREC)


def absolute_errors(computed, exact) -> np.ndarray:
    """|computed − exact| elementwise as float64 (inf where either side is not finite)."""
    computed = np.asarray(computed, dtype=np.float64)
    exact = np.asarray(exact, dtype=object).reshape(computed.shape)
    out = np.empty(computed.shape)
    with mpmath.workprec(PREC + 64):
        for index, value in np.ndenumerate(computed):
            reference = exact[index]
            if not np.isfinite(value) or not mpmath.isfinite(reference):
                same = (np.isnan(value) and mpmath.isnan(reference)) or (value == reference)
                out[index] = 0.0 if same else np.inf
                continue
            out[index] = float(abs(mpmath.mpf(float(value)) - reference))
    return out


def as_float64(exact) -> np.ndarray:
    """Exact outputs rounded to binary64 (for magnitudes in bounds and reports)."""
    exact = np.asarray(exact, dtype=object)
    return np.array([float(v) for v in exact.ravel()]).reshape(exact.shape)
