"""The normalizers as sympy expressions, written from their definitions (registry.py).

Two forms of each: `*_entry(algebra, ...)` gives entry i for a general width d (SumAlgebra),
`*_vector(xs, ...)` gives the whole output for a concrete list of symbols or numbers. They are
written independently, so that agreement between them is a check of both.

Keyword variants exist only to build the deliberately wrong versions that proofs/ must reject:
`variance_divisor` (d − 1 gives the unbiased variance), `divisor` (CRMSNorm's d − 1),
`eps_power` (the naive eps inside the Lp root instead of eps^(p/2)).
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from normtheory.symbolic.powersums import SumAlgebra

EPS_MODES = ("inside", "outside")


def divide_by_normalizer(numerator, mean_power, eps, eps_mode, p=2, eps_term=None):
    """numerator / N with N = (m + eps_term)^(1/p) (inside) or m^(1/p) + eps (outside)."""
    if eps_mode == "inside":
        floor = eps if eps_term is None else eps_term
        return numerator / (mean_power + floor) ** (sp.Integer(1) / p)
    if eps_mode == "outside":
        return numerator / (mean_power ** (sp.Integer(1) / p) + eps)
    raise ValueError(f"eps_mode must be one of {EPS_MODES}, got {eps_mode!r}")


# ---- general width d ---------------------------------------------------------------------
def rmsnorm_entry(alg: SumAlgebra, eps, eps_mode="inside", of=None):
    """RMSNorm entry i of the vector whose entry i is `of` (default x_i)."""
    v = alg.i["x"] if of is None else of
    return divide_by_normalizer(v, alg.mean(v**2), eps, eps_mode)


def centred_entry(alg: SumAlgebra):
    """Entry i of x − mean(x)·1."""
    x = alg.i["x"]
    return x - alg.mean(x)


def layernorm_entry(alg: SumAlgebra, eps, eps_mode="inside", variance_divisor=None):
    """LayerNorm entry i: (x_i − μ)/sqrt(Σ(x − μ)²/d + eps) (or outside), biased by default."""
    c = centred_entry(alg)
    divisor = alg.d if variance_divisor is None else variance_divisor
    return divide_by_normalizer(c, alg.total(c**2) / divisor, eps, eps_mode)


def layernorm_jiang_entry(alg: SumAlgebra, eps, eps_mode="inside"):
    """LayerNorm in Jiang et al.'s notation: (x − μ1)/sqrt(‖x‖²/d − μ² + eps)."""
    x = alg.i["x"]
    mu = alg.mean(x)
    return divide_by_normalizer(x - mu, alg.mean(x**2) - mu**2, eps, eps_mode)


def crmsnorm_entry(alg: SumAlgebra, eps, eps_mode="inside", divisor=None):
    """CRMSNorm entry i of z (alg.width must be d − 1): z/sqrt((Σz² + (Σz)²)/d + eps)."""
    z = alg.i["x"]
    divisor = alg.d if divisor is None else divisor
    statistic = (alg.total(z**2) + alg.total(z) ** 2) / divisor
    return divide_by_normalizer(z, statistic, eps, eps_mode)


def lpnorm_entry(alg: SumAlgebra, eps, p, eps_mode="inside", eps_power=None):
    """Lp entry i: x_i/((1/d)Σ|x|^p + eps^(p/2))^(1/p) (inside) or x_i/(((1/d)Σ|x|^p)^(1/p) + eps)."""
    x = alg.i["x"]
    # sympify: a Python int p would make p / 2 a float (eps**1.0), an inexact expression
    eps_term = eps ** (sp.sympify(p) / 2 if eps_power is None else eps_power)
    return divide_by_normalizer(x, alg.mean(sp.Abs(x) ** p), eps, eps_mode, p, eps_term)


# ---- concrete width ----------------------------------------------------------------------
def rmsnorm_vector(xs: Sequence, eps, eps_mode="inside"):
    d = len(xs)
    return [divide_by_normalizer(x, sum(v**2 for v in xs) / d, eps, eps_mode) for x in xs]


def layernorm_vector(xs: Sequence, eps, eps_mode="inside", variance_divisor=None):
    d = len(xs)
    mu = sum(xs) / sp.Integer(d)
    centred = [x - mu for x in xs]
    divisor = d if variance_divisor is None else variance_divisor
    return [divide_by_normalizer(c, sum(v**2 for v in centred) / divisor, eps, eps_mode) for c in centred]


def crmsnorm_vector(zs: Sequence, eps, eps_mode="inside", divisor=None):
    """CRMSNorm of z (d − 1 entries), with model width d = len(zs) + 1 as the divisor."""
    d = len(zs) + 1 if divisor is None else divisor
    statistic = (sum(v**2 for v in zs) + sum(zs) ** 2) / sp.sympify(d)
    return [divide_by_normalizer(z, statistic, eps, eps_mode) for z in zs]


def lpnorm_vector(xs: Sequence, eps, p, eps_mode="inside", eps_power=None):
    d = len(xs)
    eps_term = eps ** (p / sp.Integer(2) if eps_power is None else eps_power)
    mean_power = sum(sp.Abs(v) ** p for v in xs) / sp.Integer(d)
    return [divide_by_normalizer(x, mean_power, eps, eps_mode, p, eps_term) for x in xs]


def vector_symbols(name: str, n: int, **assumptions):
    """x_1 .. x_n as a list of real sympy symbols."""
    return list(sp.symbols(f"{name}_1:{n + 1}", real=True, **assumptions))
