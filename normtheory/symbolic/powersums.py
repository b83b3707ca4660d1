"""Finite sums over a generic coordinate, so that proofs hold for a general width d.

A vector of d symbols exists only for a concrete d. For general d, the i-th entry of a
normalizer is written in terms of the i-th coordinates (x_i, and g_i for a gradient, ...) and
of symbols that each stand for a whole sum Σ_l m(x_l, g_l, ...). Only linearity of finite sums
is used: Σ_i c·m(x_i) = c·Σ(m) when c does not depend on i, and Σ_i c = n·c (n the number of
terms). Derivatives follow from ∂Σ(m)/∂x_j = (∂m/∂x)(x_j). Every result can be instantiated for
a concrete vector, which is how the general-d proofs are spot-checked and cross-checked.

Degenerate rows (a statistic that is 0) are outside these proofs: the formulas divide by them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sympy as sp


class SumAlgebra:
    """Entries at a generic index i (and a second index j ≠ i) plus symbols for sums over l.

    fields: names of the per-coordinate quantities (e.g. ("x",) or ("x", "g")).
    width: the number of terms of every sum (d, or d − 1 for CRMSNorm's z).
    """

    def __init__(self, fields: Sequence[str] = ("x",), width=None):
        self.d = sp.Symbol("d", integer=True, positive=True)
        self.width = self.d if width is None else width
        self.fields = tuple(fields)
        self.i = {f: sp.Symbol(f"{f}_i", real=True) for f in self.fields}
        self.j = {f: sp.Symbol(f"{f}_j", real=True) for f in self.fields}
        self._sums: dict[sp.Expr, sp.Symbol] = {}

    # ---- sums --------------------------------------------------------------------------
    def sum_symbol(self, term: sp.Expr) -> sp.Symbol:
        """The symbol standing for Σ_l term(l); positive when every term is nonnegative
        (zero sums are the excluded degenerate rows)."""
        term = sp.expand(term)
        if term not in self._sums:
            nonnegative = bool(term.is_nonnegative)
            self._sums[term] = sp.Symbol(f"Σ[{term}]", real=True, positive=nonnegative or None)
        return self._sums[term]

    def total(self, expr: sp.Expr) -> sp.Expr:
        """Σ_i expr over the index i, by linearity; every other symbol is constant in i."""
        result = sp.Integer(0)
        own = tuple(self.i.values())
        for term in sp.Add.make_args(sp.expand(expr)):
            constant, varying = term.as_independent(*own, as_Add=False)
            if varying == 1:
                result += constant * self.width
            else:
                result += constant * self.sum_symbol(varying)
        return result

    def total_over_j(self, expr: sp.Expr) -> sp.Expr:
        """Σ_j expr over the index j (with i fixed); the result is written at index i."""
        swap = {**{self.i[f]: self.j[f] for f in self.fields}, **{self.j[f]: self.i[f] for f in self.fields}}
        summed = self.total(expr.xreplace(swap))  # j is now the summed index i
        return summed.xreplace({self.j[f]: self.i[f] for f in self.fields})

    def mean(self, expr: sp.Expr) -> sp.Expr:
        """(1/d)·Σ_i expr: the divisor is always the model width d, as in the registry."""
        return self.total(expr) / self.d

    # ---- derivatives -------------------------------------------------------------------
    def partial(self, expr: sp.Expr, field: str = "x") -> tuple[sp.Expr, sp.Expr]:
        """∂(entry i)/∂field_j as (own, through_sums): the derivative is δ_ij·own + through_sums.

        own is the direct dependence on field_i (a function of index i); through_sums collects
        the dependence through every sum symbol (a function of indices i and j).
        """
        xi = self.i[field]
        own = sp.diff(expr, xi)
        to_j = {self.i[f]: self.j[f] for f in self.fields}
        through = sp.Integer(0)
        for term, symbol in self._sums.items():
            if expr.has(symbol):
                through += sp.diff(expr, symbol) * sp.diff(term, xi).xreplace(to_j)
        return own, through

    def at_j(self, expr: sp.Expr) -> sp.Expr:
        """The same entry at index j instead of i."""
        return expr.xreplace({self.i[f]: self.j[f] for f in self.fields})

    # ---- concrete instances ------------------------------------------------------------
    def instance(self, values: Mapping[str, Sequence], i: int = 0, j: int | None = None,
                 d=None) -> dict:
        """Exact substitution for a concrete vector: values[field][l] for l = 0..n−1.

        Maps d, every sum symbol, the index-i coordinates (entry i) and, if j is given, the
        index-j coordinates. d defaults to n (or n + 1 when width is d − 1).
        """
        n = len(next(iter(values.values())))
        if d is None:
            d = n + 1 if self.width != self.d else n
        point: dict = {self.d: sp.sympify(d)}
        for term, symbol in self._sums.items():
            point[symbol] = sum(
                (term.xreplace({self.i[f]: sp.sympify(values[f][l]) for f in self.fields}) for l in range(n)),
                sp.Integer(0))
        for f in self.fields:
            point[self.i[f]] = sp.sympify(values[f][i])
            if j is not None:
                point[self.j[f]] = sp.sympify(values[f][j])
        return point

    def explicit(self, expr: sp.Expr, coordinates: Mapping[str, Sequence], i: int, j: int | None = None,
                 d=None) -> sp.Expr:
        """expr written out for concrete coordinates (symbols or numbers) at entry i (and j)."""
        return sp.sympify(expr).xreplace(self.instance(coordinates, i, j, d))
