"""Deciding the correctly rounded value: interval test, then Ziv's strategy, then exact arithmetic.

1. `decide.decide_interval`: the fast path gives ŷ and a bound E; if ŷ − E and ŷ + E round to the
   same bits, so does the exact value (rounding is monotone). Bits, not values: an interval
   around 0 rounds to −0 and +0 and stays undecided until the sign is known.
2. `SlowEvaluator`: arb balls at increasing precision (Ziv). A ball whose two ends round to
   the same bits decides the element.
3. Balls never decide an exact midpoint or an exact zero: after the first failures the
   element is evaluated exactly in Q(√R) (rings.ExactRing); a rational result is rounded
   exactly (ties to even), an irrational one cannot be a midpoint and Ziv goes on. A cap on
   the precision turns the remaining (never seen) cases into UndecidedRounding.

Zero results take the sign IEEE-754 arithmetic gives the formula in the order written in
formulas.py: the float64 fast path follows that order, so an exact zero takes the sign of
its float64 evaluation when that evaluation is itself zero, and +0 otherwise (an exact
cancellation of nonzero terms rounds to +0 in round-to-nearest).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from normtheory.errors import UndecidedRounding
from normtheory.formats import FloatFormat, round_dyadic, round_fraction
from normtheory.reference.formulas import RowMath
from normtheory.reference.rings import ArbRing, ExactRing, NotExact, sum_of_surds_is_rational

PRECISIONS = (128, 256, 512, 1024, 2048, 4096)
EXACT_AFTER = 256  # try exact arithmetic once balls at this precision failed


def _fraction_of_exact_arb(ball) -> Fraction:
    man, exp = ball.man_exp()
    man, exp = int(man), int(exp)
    return Fraction(man) * (Fraction(2) ** exp)


def round_ball(ball, fmt: FloatFormat):
    """The format value both ends of an arb ball round to (float64, ±inf on overflow), or None."""
    if not ball.is_finite():
        return None
    ends = []
    for end in (ball.lower(), ball.upper()):
        man, exp = end.man_exp()
        if man == 0:
            return None  # an end at exactly 0: the sign of a zero result is not decided by balls
        ends.append(np.float64(round_dyadic(int(man), int(exp), fmt)))
    return float(ends[0]) if ends[0].view(np.uint64) == ends[1].view(np.uint64) else None


def round_exact(value: Fraction, fmt: FloatFormat, float_estimate: float) -> float:
    if value == 0:
        return float(np.copysign(0.0, float_estimate)) if float_estimate == 0 else 0.0
    return round_fraction(abs(value), fmt, value < 0)


class SlowEvaluator:
    """Row formulas at increasing precision, cached per (row, precision)."""

    def __init__(self, params, x, w, b, gy, d, fmt: FloatFormat):
        self.params, self.x, self.w, self.b, self.gy, self.d, self.fmt = params, x, w, b, gy, d, fmt
        self._rows: dict[tuple[int, object], RowMath] = {}

    def _row(self, i: int, ring, key):
        cache_key = (i, key)
        if cache_key not in self._rows:
            gy_row = None if self.gy is None else self.gy[i]
            self._rows[cache_key] = RowMath(ring, self.params, self.x[i], self.w, self.b, gy_row, self.d)
        return self._rows[cache_key]

    def element(self, kind: str, i: int, j: int, ring, key):
        """The exact formula for output `kind` at (i, j) (gw/gb: i is ignored, j the column)."""
        if kind == "gw":
            terms = [self._row(r, ring, key).gw_term(j) for r in range(self.x.shape[0])]
            if ring is ExactRing:
                return terms
            total = ring.zero
            for term in terms:
                total = total + term
            return total
        row = self._row(i, ring, key)
        return row.y(j) if kind == "y" else row.gx(j)

    def decide(self, kind: str, i: int, j: int, float_estimate: float) -> float:
        if kind == "gb":  # Σ gy is rational: sum it exactly
            exact = sum((Fraction(float(v)) for v in self.gy[:, j]), Fraction(0))
            return round_exact(exact, self.fmt, float_estimate)
        tried_exact = False
        for prec in PRECISIONS:
            with ArbRing(prec) as ring:
                ball = self.element(kind, i, j, ring, prec)
                if ball.is_exact():  # radius 0: the ball is the exact value (zeros, midpoints)
                    return round_exact(_fraction_of_exact_arb(ball), self.fmt, float_estimate)
                value = round_ball(ball, self.fmt)
            if value is not None:
                return value
            if prec >= EXACT_AFTER and not tried_exact:
                tried_exact = True
                exact = self._exact_value(kind, i, j)
                if exact is not None:
                    return round_exact(exact, self.fmt, float_estimate)
        raise UndecidedRounding(
            f"{self.params.op} {kind}[{i}, {j}]: rounding to {self.fmt.name} undecided at {PRECISIONS[-1]} bits"
        )

    def decide_pending(self, kind: str, values, pending: list, mask) -> int:
        """Decide, in `values`, every element the fast tiers left for output `kind`: `pending`
        holds (rows, cols, float64 estimates) triples; elements under `mask` (where a non-finite
        input reaches, masks.nan_mask; None if nowhere) are skipped and set to NaN. Returns how
        many elements were decided here."""
        escalated = 0
        for rows_i, cols_j, estimates in pending:
            for i, j, estimate in zip(rows_i, cols_j, estimates):
                if mask is not None and mask[i, j]:
                    continue
                values[i, j] = self.decide(kind, int(i), int(j), float(estimate))
                escalated += 1
        if mask is not None:
            values[mask] = np.nan
        return escalated

    def _exact_value(self, kind, i, j):
        """The exact value when it is rational (a midpoint or zero candidate), else None."""
        try:
            value = self.element(kind, i, j, ExactRing, "exact")
        except (NotExact, ZeroDivisionError):
            return None
        if kind == "gw":
            return sum_of_surds_is_rational(value)
        return value.as_fraction() if value.is_rational else None
