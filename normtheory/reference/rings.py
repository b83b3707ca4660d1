"""Number systems the exact formulas are evaluated in.

`ArbRing` — python-flint arb balls at a given precision: a rigorous enclosure of the exact
real result, used by Ziv's strategy (widen the precision until the ball rounds to one value).

`ExactRing` — exact arithmetic in Q(√R): every quantity of LayerNorm, RMSNorm and CRMSNorm
(and Lp for p ∈ {1, 2}) lies in a field Q(√R) with one rational R per row. It is used to
decide the cases Ziv cannot: results that are exactly a rounding midpoint or exactly zero
(a constant row whose output is its bias, eps = 0 with a perfect-square mean square, ...).
Operations it cannot do exactly raise `NotExact`.
"""

from __future__ import annotations

import math
from fractions import Fraction

from flint import arb, ctx, fmpq


class NotExact(ArithmeticError):
    """The exact ring cannot represent this result (e.g. a p-th root for p > 2)."""


def _is_integer(value: float) -> bool:
    return math.isfinite(value) and float(value).is_integer()


# ---------------------------------------------------------------------------------------
class ArbRing:
    """arb balls at `prec` bits. Call inside `with ArbRing(prec):` (flint's context is global)."""

    def __init__(self, prec: int):
        self.prec = prec
        self._saved = None

    def __enter__(self):
        self._saved = ctx.prec
        ctx.prec = self.prec
        return self

    def __exit__(self, *exc):
        ctx.prec = self._saved

    zero = arb(0)
    one = arb(1)

    @staticmethod
    def const(value: float):
        return arb(float(value))  # exact: a binary64 value is an arb midpoint with radius 0

    @staticmethod
    def sqrt(value):
        return value.sqrt()

    @staticmethod
    def root(value, p: float):
        if p == 1 or (value.is_exact() and value.is_zero()):
            return value
        if p == 2:
            return value.sqrt()
        if _is_integer(p):
            return value.root(int(p))
        return (value.log() / arb(p)).exp()

    @staticmethod
    def abs_pow(value: float, p: float):
        """|value|**p for an exact binary64 value."""
        if value == 0:
            return arb(0)
        base = arb(abs(float(value)))
        return base ** int(p) if _is_integer(p) else base ** arb(p)

    @staticmethod
    def eps_pow(eps: float, p: float):
        """eps**(p/2): the RMS floor sqrt(eps) raised to p."""
        if eps == 0:
            return arb(0)
        if _is_integer(p) and int(p) % 2 == 0:
            return arb(eps) ** (int(p) // 2)
        return arb(eps) ** (arb(p) / 2)

    @staticmethod
    def pow_elem(value, q: float):
        """|value|**q for a ring element (q = p - 1 >= 0)."""
        if q == 0:
            return arb(1)
        if _is_integer(q):
            return abs(value) ** int(q)
        return abs(value) ** arb(q)


# ---------------------------------------------------------------------------------------
def _fmpq_from_float(value: float) -> fmpq:
    frac = Fraction(float(value))
    return fmpq(frac.numerator, frac.denominator)


def _rational_sqrt(q: fmpq):
    """sqrt(q) as an fmpq when q is a perfect square, else None."""
    num, den = int(q.p), int(q.q)
    rn, rd = math.isqrt(num), math.isqrt(den)
    if rn * rn == num and rd * rd == den:
        return fmpq(rn, rd)
    return None


class Surd:
    """a + b·√R with a, b, R rational (R > 0 not a perfect square, or b = 0)."""

    __slots__ = ("a", "b", "R")

    def __init__(self, a, b=0, R=None):
        self.a = a if isinstance(a, fmpq) else fmpq(a)
        self.b = b if isinstance(b, fmpq) else fmpq(b)
        self.R = R if self.b != 0 else None

    @staticmethod
    def lift(value) -> Surd:
        return value if isinstance(value, Surd) else Surd(value)

    def _common_R(self, other: Surd):
        if self.R is None:
            return other.R
        if other.R is None or other.R == self.R:
            return self.R
        raise NotExact("two different square roots in one expression")

    def __add__(self, other):
        other = Surd.lift(other)
        return Surd(self.a + other.a, self.b + other.b, self._common_R(other))

    __radd__ = __add__

    def __neg__(self):
        return Surd(-self.a, -self.b, self.R)

    def __sub__(self, other):
        return self + (-Surd.lift(other))

    def __rsub__(self, other):
        return Surd.lift(other) - self

    def __mul__(self, other):
        other = Surd.lift(other)
        R = self._common_R(other)
        rational = self.a * other.a + (self.b * other.b * R if R is not None else 0)
        return Surd(rational, self.a * other.b + self.b * other.a, R)

    __rmul__ = __mul__

    def inverse(self) -> Surd:
        if self.b == 0:
            if self.a == 0:
                raise ZeroDivisionError("exact division by zero")
            return Surd(1 / self.a)
        norm = self.a * self.a - self.b * self.b * self.R  # nonzero: √R is irrational
        return Surd(self.a / norm, -self.b / norm, self.R)

    def __truediv__(self, other):
        return self * Surd.lift(other).inverse()

    def __rtruediv__(self, other):
        return Surd.lift(other) * self.inverse()

    def sign(self) -> int:
        sa = (self.a > 0) - (self.a < 0)
        sb = (self.b > 0) - (self.b < 0)
        if sb == 0 or sa == sb:
            return sa or sb
        if sa == 0:
            return sb
        # opposite signs: compare a² with b²R exactly (never equal, √R irrational)
        return sa if self.a * self.a > self.b * self.b * self.R else sb

    def __abs__(self):
        return -self if self.sign() < 0 else self

    @property
    def is_rational(self) -> bool:
        return self.b == 0

    def as_fraction(self) -> Fraction:
        if self.b != 0:
            raise NotExact("irrational value")
        return Fraction(int(self.a.p), int(self.a.q))


class ExactRing:
    """Exact arithmetic in Q(√R) (see module docstring)."""

    zero = Surd(0)
    one = Surd(1)

    @staticmethod
    def const(value: float) -> Surd:
        return Surd(_fmpq_from_float(value))

    @staticmethod
    def sqrt(value) -> Surd:
        value = Surd.lift(value)
        if not value.is_rational:
            raise NotExact("square root of an irrational number")
        if value.a < 0:
            raise NotExact("square root of a negative number")
        root = _rational_sqrt(value.a)
        return Surd(root) if root is not None else Surd(0, 1, value.a)

    @classmethod
    def root(cls, value, p: float) -> Surd:
        if p == 1:
            return Surd.lift(value)
        if p == 2:
            return cls.sqrt(value)
        raise NotExact(f"exact {p}-th roots are not supported")

    @staticmethod
    def abs_pow(value: float, p: float) -> Surd:
        if not _is_integer(p):
            raise NotExact("non-integer power")
        return Surd(_fmpq_from_float(abs(value)) ** int(p))

    @classmethod
    def eps_pow(cls, eps: float, p: float) -> Surd:
        if not _is_integer(p):
            raise NotExact("non-integer power of eps")
        k = int(p)
        base = _fmpq_from_float(eps)
        if k % 2 == 0:
            return Surd(base ** (k // 2))
        return Surd(base ** (k // 2)) * cls.sqrt(Surd(base))

    @staticmethod
    def pow_elem(value, q: float) -> Surd:
        if not _is_integer(q):
            raise NotExact("non-integer power")
        result = Surd(1)
        base = abs(Surd.lift(value))
        for _ in range(int(q)):
            result = result * base
        return result


def sum_of_surds_is_rational(terms: list[Surd]):
    """Exact sum of surds from different rows (different √R): the Fraction if rational, else None.

    Square roots of rationals whose pairwise ratios are not rational squares are linearly
    independent over Q (together with 1), so the sum is rational exactly when the
    coefficients of every such class cancel.
    """
    rational = fmpq(0)
    classes: list[list] = []  # [representative R, total coefficient]
    for term in terms:
        rational += term.a
        if term.b == 0:
            continue
        for entry in classes:
            ratio_root = _rational_sqrt(term.R / entry[0])
            if ratio_root is not None:
                entry[1] += term.b * ratio_root
                break
        else:
            classes.append([term.R, term.b])
    if any(coefficient != 0 for _, coefficient in classes):
        return None
    return Fraction(int(rational.p), int(rational.q))
