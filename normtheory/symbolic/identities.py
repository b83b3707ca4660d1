"""Deciding a claimed identity: a symbolic proof that lhs − rhs is 0, or a counterexample.

One code path serves both outcomes, so a proof's ability to fail is itself testable: feed it
a deliberately wrong variant and it must come back with a concrete point where the two sides
differ. "Not simplified to zero" alone is never reported as false; only an exact point whose
difference is far from zero at 110 digits (and agrees at 150 digits) counts as a counterexample.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import sympy as sp

DIGITS = 110  # working precision of every numeric judgement in proofs/
NONZERO_THRESHOLD = sp.Float("1e-40", DIGITS)  # far above evalf's error at DIGITS digits


@dataclass
class Verdict:
    """Outcome of `decide`: proven (difference simplified to 0), refuted, or undecided."""

    proven: bool
    method: str = ""
    counterexample: Mapping | None = None
    difference_at_counterexample: sp.Float | None = None
    residual: object = field(default=None, repr=False)

    @property
    def refuted(self) -> bool:
        return self.counterexample is not None


def _entries(expr) -> list:
    if isinstance(expr, (list, tuple)):
        return [e for item in expr for e in _entries(item)]
    if isinstance(expr, sp.MatrixBase):
        return list(expr)
    return [sp.sympify(expr)]


_CHEAP_REWRITES = (("expand", sp.expand), ("cancel", lambda e: sp.cancel(sp.together(e))))


def simplifies_to_zero(expr, rewrites=None) -> tuple[bool, str, list]:
    """Whether every entry of `expr` reduces to 0 by exact rewriting, and by which method.

    Cheap canonical forms come first (expansion makes equal radicands structurally equal,
    which is how most normalizer identities close); `sympy.simplify` is the last resort. Each
    method is an exact transformation, so a 0 from any of them is a proof. Returns the
    entries that did not reduce (rewritten, still equal to the originals).
    """
    rewrites = _CHEAP_REWRITES + (("simplify", sp.simplify),) if rewrites is None else rewrites
    remaining = []
    methods = set()
    for entry in _entries(expr):
        for name, rewrite in rewrites:
            entry = rewrite(entry)
            if entry == 0:
                methods.add(name)
                break
        else:
            remaining.append(entry)
    if remaining:
        return False, "", remaining
    return True, "+".join(sorted(methods)) or "structural", []


def numeric_value(expr, point: Mapping, digits: int = DIGITS) -> sp.Float:
    """The exact expression at an exact point, evaluated by sympy's adaptive evalf.

    The point's values may themselves contain symbols of the point (a sum Σ|x|^p holds p), so
    the substitution is repeated until none is left.
    """
    point = {k: sp.sympify(v) for k, v in point.items()}
    expr = sp.sympify(expr)
    for _ in range(4):
        expr = expr.xreplace(point)
        if not expr.free_symbols & point.keys():
            break
    return expr.evalf(digits, maxn=4 * digits)


def is_counterexample(expr, point: Mapping) -> tuple[bool, sp.Float]:
    """A point where some entry of expr is nonzero, confirmed at two precisions."""
    for entry in _entries(expr):
        low = numeric_value(entry, point, DIGITS)
        if not (low.is_number and low.is_real) or low.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
            continue  # outside the formula's domain: no evidence either way
        if abs(low) > NONZERO_THRESHOLD:
            high = numeric_value(entry, point, DIGITS + 40)
            if abs(high - low) < abs(low) * sp.Float("1e-30"):
                return True, low
    return False, sp.Float(0)


def decide(lhs, rhs, candidates: Iterable[Mapping]) -> Verdict:
    """Prove lhs == rhs symbolically, else look for a counterexample among exact candidates.

    `lhs`, `rhs`: expressions, lists or matrices of the same shape. `candidates`: exact
    substitutions (symbol -> Rational/int) covering every free symbol of the difference.
    """
    lhs_entries, rhs_entries = _entries(lhs), _entries(rhs)
    if len(lhs_entries) != len(rhs_entries):
        raise ValueError(f"shapes differ: {len(lhs_entries)} vs {len(rhs_entries)} entries")
    difference = [a - b for a, b in zip(lhs_entries, rhs_entries)]
    proven, method, residual = simplifies_to_zero(difference, _CHEAP_REWRITES)
    if proven:
        return Verdict(True, method)
    # A false identity never simplifies to 0, so look for a witness before the costly simplify.
    candidates = list(candidates)
    for point in candidates:
        found, value = is_counterexample(residual, point)
        if found:
            return Verdict(False, "counterexample", dict(point), value, residual)
    proven, method, residual = simplifies_to_zero(residual, (("simplify", sp.simplify),))
    if proven:
        return Verdict(True, method)
    return Verdict(False, "undecided", residual=residual)


def worst_relative_difference_at(lhs, rhs, point: Mapping, digits: int = DIGITS) -> sp.Float:
    """max over entries of |lhs − rhs| / max(|lhs|, |rhs|) at an exact point (0 when both are 0)."""
    worst = sp.Float(0)
    for a, b in zip(_entries(lhs), _entries(rhs)):
        va, vb = numeric_value(a, point, digits), numeric_value(b, point, digits)
        scale = max(abs(va), abs(vb))
        if scale:
            worst = max(worst, abs(va - vb) / scale)
    return worst


def rational_points(symbols, count: int = 3, seed: int = 0) -> list[dict]:
    """Deterministic exact points: distinct small rationals of both signs for each symbol.

    Distinct values keep rows away from the degenerate (constant / zero) cases that the
    formulas exclude by dividing by them.
    """
    import random

    rng = random.Random(seed)
    points = []
    for _ in range(count):
        numerators = rng.sample(range(-40, 41), len(symbols))
        points.append({s: sp.Rational(n if n else 41, rng.choice((2, 3, 4, 5, 7))) for s, n in zip(symbols, numerators)})
    return points
