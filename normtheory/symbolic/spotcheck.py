"""Numeric spot-checks: a sympy expression lambdified to mpmath, evaluated at ≥ 100 digits.

The values are compared with `normtheory.reference.evaluate` (an arb-ball implementation
written from the same definitions but sharing no code with this package), element by element,
by relative difference. Inputs are binary64 values, which both sides take exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mpmath
import numpy as np
import sympy as sp

SPOT_DIGITS = 110  # mpmath working precision of a spot-check
REFERENCE_BITS = 420  # reference.evaluate's precision (≈ 126 digits), above SPOT_DIGITS
AGREEMENT = mpmath.mpf(10) ** -100  # relative agreement demanded: 100 digits


def mp_function(arguments: Sequence[sp.Symbol], expression) -> Callable:
    """The expression as a Python function on mpmath numbers (no float64 anywhere).

    Common subexpressions are shared (cse): derivative trees repeat the same roots many times,
    and printing them unshared dominates the run time of proofs/.
    """
    return sp.lambdify(list(arguments), expression, modules="mpmath", cse=True)


def as_mpf(value) -> mpmath.mpf:
    """An exact mpmath copy of a binary64 value (or an mpf already)."""
    return value if isinstance(value, mpmath.mpf) else mpmath.mpf(float(value))


def evaluate_at(function: Callable, *values) -> list:
    """function(*values) at SPOT_DIGITS, each value converted exactly; returns a flat list.

    Everything, the flattening included, happens inside the precision context: an mpf created
    or rounded (unary +) outside it would silently drop to mpmath's default 53 bits.
    """
    with mpmath.workdps(SPOT_DIGITS):
        result = function(*[as_mpf(v) for v in values])
        if isinstance(result, mpmath.matrix):
            return [result[k] for k in range(result.rows * result.cols)]
        if isinstance(result, (list, tuple)):
            return [mpmath.mpf(r) for r in np.ravel(np.array(result, dtype=object))]
        return [mpmath.mpf(result)]


def relative_difference(a, b) -> mpmath.mpf:
    """|a − b| / max(|a|, |b|), and |a − b| when both are 0-sized; NaN on either side is inf."""
    with mpmath.workdps(SPOT_DIGITS):
        a, b = mpmath.mpf(a), mpmath.mpf(b)
        if mpmath.isnan(a) or mpmath.isnan(b):
            return mpmath.inf
        scale = max(abs(a), abs(b))
        return abs(a - b) / scale if scale else mpmath.mpf(0)


def worst_disagreement(values, expected) -> tuple[mpmath.mpf, int]:
    """Largest relative difference over paired flat sequences, and its index."""
    values, expected = list(np.ravel(np.asarray(values, dtype=object))), list(np.ravel(np.asarray(expected, dtype=object)))
    if len(values) != len(expected):
        raise ValueError(f"length mismatch: {len(values)} vs {len(expected)}")
    differences = [relative_difference(a, b) for a, b in zip(values, expected)]
    worst = max(range(len(differences)), key=lambda k: differences[k])
    return differences[worst], worst


def agrees(values, expected) -> bool:
    """True when every pair agrees to 100 significant digits."""
    worst, _ = worst_disagreement(values, expected)
    return worst <= AGREEMENT


def reference(op: str, x, **kwargs) -> dict:
    """normtheory.reference.evaluate at REFERENCE_BITS, flattened to lists of mpf."""
    from normtheory.reference import evaluate

    # evaluate() builds its mpf results in mpmath's global context, which rounds them to that
    # context's precision (53 bits by default), so it must run inside a wide enough one.
    with mpmath.workprec(REFERENCE_BITS):
        result = evaluate(op, np.asarray(x, dtype=np.float64), prec=REFERENCE_BITS, **kwargs)
    return {key: list(np.ravel(value)) for key, value in result.items()}


def sample_rows(d: int, count: int = 3, seed: int = 0, offset: float = 0.0) -> list[np.ndarray]:
    """Deterministic float64 rows of width d: normal draws, one with an outlier, one offset."""
    rng = np.random.default_rng(seed + 1000 * d)
    rows = [rng.standard_normal(d) for _ in range(count)]
    rows[-1] = rows[-1] * 2.0**-7 + offset  # small spread (and a mean, for LayerNorm rows)
    if count > 1:
        rows[0][0] = 37.5  # an outlier
    return rows


def reference_jacobian(op: str, row, **kwargs) -> mpmath.matrix:
    """J[k, j] = ∂y_k/∂x_j of the reference at one row, read off its VJP with gy = e_k.

    The row is repeated once per output k, with gy the identity: gx row k = Jᵀe_k = J[k, :].
    """
    row = np.asarray(row, dtype=np.float64)
    n = row.size
    gx = reference(op, np.tile(row, (n, 1)), gy=np.eye(n), **kwargs)["gx"]
    with mpmath.workdps(SPOT_DIGITS):
        return mpmath.matrix([[gx[k * n + j] for j in range(n)] for k in range(n)])


def spectral_norm(matrix: mpmath.matrix) -> mpmath.mpf:
    """Largest singular value, at SPOT_DIGITS."""
    with mpmath.workdps(SPOT_DIGITS):
        return max(mpmath.svd_r(matrix, compute_uv=False))
