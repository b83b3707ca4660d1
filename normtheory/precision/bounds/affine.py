"""Steps 6–7 of the forward derivation: the affine step and the output rounding, bounded.

Given |n̂ − n| ≤ E_n (bounds/normalized.py; for Lp, bounds/lp.py), u and η of the format the
affine step is done in:
 6. Affine in the accumulator: weight |w|E_n(1 + u) + u|n·w|; weight_bias (two roundings,
    or one FMA, which the same expression covers) |w|E_n(1 + u)² + (2u + u²)|n·w| + u|b|;
    offset_weight with (1 + w) formed in a format of unit roundoff u_f: |1+w|(1+u_f)·E_n(1+u)
    + |n|·u_f|1 + w|(1 + u) + u|n(1 + w)|.
 7. Output: once: + u_o(|z| + E_z) + η_o (none when the output format is at least as precise
    as the accumulator); truncate: + 2u_o(|z| + E_z) + 2η_o (a truncation errs by < 1 ulp,
    and ulp(z) ≤ 2u_o|z|); llama: n̂ is rounded first (E_n + u_o(|n| + E_n) + η_o) and the
    affine step uses u_o (bounds/forward.py).
"""

from __future__ import annotations

import numpy as np

from normtheory.formats import FloatFormat


def affine_error(affine: str, n_abs: np.ndarray, err_n: np.ndarray, w: np.ndarray, b: np.ndarray, *, u: float, eta: float,
                 offset_u: float) -> tuple[np.ndarray, np.ndarray]:
    """(|z|, bound on |ẑ − z|) for the affine step done in a format of unit roundoff u (step 6)."""
    if affine == "none":
        return n_abs, err_n
    if affine == "weight":
        aw = np.abs(w)
        return n_abs * aw, aw * err_n * (1 + u) + u * n_abs * aw + eta
    if affine == "weight_bias":
        aw, ab = np.abs(w), np.abs(b)
        z_abs = n_abs * aw + ab  # an upper bound on |z|, enough for the rounding terms
        return z_abs, aw * err_n * (1 + u) ** 2 + (2 * u + u * u) * n_abs * aw + u * ab + 2 * eta
    if affine == "offset_weight":
        a1 = np.abs(1.0 + w)
        err_w1 = offset_u * a1 + eta
        w1 = a1 + err_w1
        return n_abs * a1, w1 * err_n * (1 + u) + n_abs * err_w1 * (1 + u) + u * n_abs * a1 + eta
    raise ValueError(f"unknown affine mode {affine!r}")


def output_rounding_error(pre: np.ndarray, magnitude: np.ndarray, *, out: FloatFormat, acc: FloatFormat,
                          truncate: bool = False) -> np.ndarray:
    """Step 7: the bound after rounding a result of at most `magnitude` (before its error `pre`)
    once to `out` (to nearest, or toward zero: twice the terms); none when `out` is at least as
    precise as the accumulator `acc` the result was computed in."""
    if out.precision >= acc.precision:
        return pre
    if truncate:
        return pre + 2 * out.unit_roundoff * (magnitude + pre) + 2 * (out.min_subnormal / 2)
    return pre + out.unit_roundoff * (magnitude + pre) + out.min_subnormal / 2


def gradient_rounding_error(pre: np.ndarray, magnitude: np.ndarray, *, out: FloatFormat, acc: FloatFormat,
                            truncate: bool = False) -> np.ndarray:
    """The backward's output rounding (B6, bounds/backward_gx.py): + u_o(|q| + E) + η_o, twice
    that for truncation, none when `out` is at least as precise as `acc`. The same terms as
    `output_rounding_error`, summed as pre + (terms) — kept in the order the proven bounds were
    evaluated in, so that they stay bit-identical."""
    if out.precision >= acc.precision:
        return pre
    twice = 2 if truncate else 1
    return pre + twice * (out.unit_roundoff * (magnitude + pre) + out.min_subnormal / 2)
