"""The reference on outputs that sit within float64 noise of a rounding midpoint, judged
against exact rational arithmetic (fractions), not against the reference's own slower tiers.

Rows of ±1 (alternating, so LayerNorm's mean is exactly 0) have a mean square of exactly 1,
so y = w·x/N with N = √(1 + eps) (eps inside the root) or 1 + eps (outside). Choosing eps
near the value that puts |y| on a midpoint m of the format, then stepping eps by 2^-60,
places the exact |y| a few float64 ulps either side of m: float64 arithmetic alone picks the
wrong side for a good share of them, so a fast tier whose error bound is too small (or
ignored) rounds some of them wrongly. The side is decided exactly: |y| > m  ⇔  w > m·N, i.e.
w² > m²·(1 + eps) inside the root and w > m·(1 + eps) outside it.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from normtheory.formats import FORMATS
from normtheory.reference import correctly_rounded

WIDTH = 8
STEPS = range(-40, 41, 4)  # eps offsets in units of 2^-60: y moves ~2^-60 per step, float64's ulp of y is 2^-53


def _exact_side_is_up(w: float, eps: float, m: Fraction, inside: bool) -> bool:
    """Whether |y| = w/N lies above the midpoint m (never on it: asserted)."""
    w_, e = Fraction(w), Fraction(eps)
    lhs, rhs = (w_ * w_, m * m * (1 + e)) if inside else (w_, m * (1 + e))
    assert lhs != rhs, "an exact tie: pick another eps"
    return lhs > rhs


def _eps_for_midpoint(w: float, m: Fraction, inside: bool) -> float:
    """The float64 nearest the eps that puts |y| exactly on m (computed exactly, then rounded
    once: a float64 ratio squared would miss it by ~2^-52, far more than the sweep's width)."""
    ratio = Fraction(w) / m
    return float(ratio * ratio - 1 if inside else ratio - 1)


@pytest.mark.parametrize("affine, w", [("none", 1.0), ("weight", 0.75)])
@pytest.mark.parametrize("inside", [True, False])
@pytest.mark.parametrize("op", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("name", ["bf16", "fp16", "fp32"])
def test_outputs_near_a_midpoint_round_to_the_exact_side(name, op, inside, affine, w):
    fmt = FORMATS[name]
    spacing = Fraction(2) ** -(fmt.precision)  # the format's spacing in [0.5, 1), where every |y| lands
    x = np.tile([1.0, -1.0], WIDTH // 2)[None, :]
    weight = np.full(WIDTH, w) if affine == "weight" else None
    for k in range(3):  # the three midpoints just below w
        m = Fraction(w) - (2 * k + 1) * spacing / 2
        below, above = float(m - spacing / 2), float(m + spacing / 2)
        eps0 = _eps_for_midpoint(w, m, inside)
        sides = set()
        for step in STEPS:
            eps = eps0 + step * 2.0**-60
            up = _exact_side_is_up(w, eps, m, inside)
            y = correctly_rounded(op, x, weight, format=name, eps=eps, eps_mode="inside" if inside else "outside",
                                  affine=affine)["y"].astype(np.float64)
            expected = np.tile([above, -above] if up else [below, -below], WIDTH // 2)
            assert np.array_equal(y[0], expected), (k, step, eps, y[0, :2], expected[:2])
            sides.add(up)
        assert sides == {True, False}  # the sweep straddles the midpoint: both sides exercised
