"""A-priori componentwise error bound of the stable Lp kernel (normtheory.kernels.lp).

The algorithm (every step rounded to nearest in the accumulator A, unit roundoff u, η = half
the smallest subnormal of A; n = d entries per row; emulated in lp_emulate.py):
    â = fl(√eps)                      (√eps formed in binary64, then rounded to A)
    K = max(max|x_i|, â)              (exact: a comparison)
    ẑ_i = fl(x_i / K)                 |ẑ_i − ζ_i| ≤ u·ζ_i + η,  ζ_i = |x_i|/K ≤ 1
    τ̂_i = pow(|ẑ_i|, p)              within k ulps of the exact power of the rounded ẑ_i
    f̂ = pow(fl(â/K), p)              (= 1 exactly when K = â)
    Ŝ = Σ τ̂_i in any order           |Ŝ − Στ̂| ≤ γ_{n−1}·Στ̂ (nonnegative terms, Higham §4.2)
    t̂ = fl(fl(Ŝ/d) + f̂)
    R̂ = pow(t̂, fl(1/p))              the exponent itself is rounded: a factor t̂^(±u/p)
    ŷ_i = fl(ẑ_i / R̂), then the affine step and the output rounding as in bounds.py.
Exactly, y_i = x_i/N with N = K·t^(1/p), t = mean(ζ^p) + (√eps/K)^p (K cancels: any K > 0
gives the same y), so every quantity above is compared with its exact counterpart for the
kernel's own K. Each step's possible values form an interval [lo, hi] that is propagated
exactly in binary64 (monotone maps), which avoids first-order expansions: the bound holds
for every p ≥ 1 and every finite input, including subnormal ζ_i and floors.

Why the bound is finite everywhere: when K = max|x_i| the maximal entry gives ζ = 1 exactly
and t ≥ 1/d; when K = â the floor is exactly 1 and t ≥ 1. So t̂ never comes near 0 or
overflow, and the relative error of N is (γ_{n−1} + (p + 2k)u)/p + O(u) for every input.

Assumptions (stated, not proved here): `pow` is within `pow_ulps` ulps of the exact power
of its (rounded) arguments, including in the subnormal range (absolute pow_ulps·2η there);
CUDA documents 4 ulps for powf's full range, glibc and Sleef 1 ulp — the default 4 covers
both. p = inf needs no pow: ŷ = fl(x/K), one rounding.
"""

from __future__ import annotations

import math

import numpy as np

from normtheory.formats import FORMATS, FloatFormat
from normtheory.precision.bounds import SAFETY, ForwardBound, Gammas, _affine_error

DEFAULT_POW_ULPS = 4


def _interval_pow(lo, hi, p, rel, absolute):
    """Bounds on pow(v, p) for v in [lo, hi] (lo ≥ 0) with relative error rel and absolute error `absolute`."""
    lo = np.maximum(lo, 0.0)
    return np.maximum(lo**p * (1 - rel) - absolute, 0.0), hi**p * (1 + rel) + absolute


def _deviation(lo, hi, exact):
    return np.maximum(hi - exact, exact - lo)


def rounded_sqrt_eps(eps: float, acc: FloatFormat) -> float:
    return float(acc.round_to_float64(math.sqrt(eps)))


def _normalized_bound(x, p, eps, acc, pow_ulps):
    """(|y|: exact normalized magnitudes, bound on |ŷ − y|) before the affine step, per element."""
    u, eta = acc.unit_roundoff, acc.min_subnormal / 2
    rows, n = x.shape
    magnitudes = np.abs(x)
    a_hat = rounded_sqrt_eps(eps, acc)
    K = np.maximum(magnitudes.max(axis=1), a_hat)
    with np.errstate(divide="ignore", invalid="ignore"):
        zeta = magnitudes / K[:, None]
    if math.isinf(p):
        N = np.maximum(magnitudes.max(axis=1), math.sqrt(eps))
        with np.errstate(divide="ignore", invalid="ignore"):
            y = magnitudes / N[:, None]
            err = magnitudes * np.abs(1 / K - 1 / N)[:, None] + u * zeta + eta
        return y, err
    rel_pow, abs_pow = 2 * pow_ulps * u, 2 * pow_ulps * eta
    z_lo, z_hi = zeta * (1 - u) - eta, zeta * (1 + u) + eta
    z_lo = np.where(zeta == 1.0, 1.0, z_lo)  # max|x|/K = 1 is exact
    z_hi = np.where(zeta == 1.0, 1.0, z_hi)
    powers = zeta**p
    tau_lo, tau_hi = _interval_pow(z_lo, z_hi, p, rel_pow, abs_pow)
    tau_lo = np.where(zeta == 1.0, 1.0, tau_lo)  # pow(1, p) = 1 exactly (C99 and CUDA)
    tau_hi = np.where(zeta == 1.0, 1.0, tau_hi)
    gamma = Gammas(u, "worst")(n - 1)
    S = powers.sum(axis=1)
    S_lo = tau_lo.sum(axis=1) * (1 - gamma)
    S_hi = tau_hi.sum(axis=1) * (1 + gamma)
    floor_exact = (math.sqrt(eps) / K) ** p
    from_floor = K == a_hat
    ratio = a_hat / K
    r_lo = np.where(from_floor, 1.0, ratio * (1 - u) - eta)
    r_hi = np.where(from_floor, 1.0, ratio * (1 + u) + eta)
    f_lo, f_hi = _interval_pow(r_lo, r_hi, p, rel_pow, abs_pow)
    f_lo = np.where(from_floor, 1.0, f_lo)
    f_hi = np.where(from_floor, 1.0, f_hi)
    t = S / n + floor_exact
    t_lo = ((S_lo / n) * (1 - u) - eta + f_lo) * (1 - u)
    t_hi = ((S_hi / n) * (1 + u) + eta + f_hi) * (1 + u)
    q = 1.0 / p
    q_err = (u + 2.0**-52) * q  # fl(1/p): 1/p in binary64, then rounded to A
    with np.errstate(divide="ignore", invalid="ignore"):
        log_spread = np.maximum(np.abs(np.log(np.maximum(t_lo, 1e-300))), np.abs(np.log(t_hi)))
        R = t**q
        R_lo = np.maximum(t_lo, 0.0) ** q * np.exp(-q_err * log_spread) * (1 - rel_pow)
        R_hi = t_hi**q * np.exp(q_err * log_spread) * (1 + rel_pow)
        y = zeta / R[:, None]
        y_lo = np.maximum(z_lo, 0.0) / R_hi[:, None] * (1 - u) - eta
        y_hi = z_hi / R_lo[:, None] * (1 + u) + eta
    return y, _deviation(y_lo, y_hi, y)


def stable_forward_bound(x, w=None, b=None, *, p, eps: float, affine: str = "none", out_format="fp32",
                         acc: str = "fp32", pow_ulps: int = DEFAULT_POW_ULPS) -> ForwardBound:
    """Componentwise bound on |ŷ − y| of the stable Lp kernel (y exact, eps inside).

    Infinite where no bound holds: a zero row with eps = 0 (the exact value is NaN), inputs
    or weights not exact in the accumulator, an output that may overflow the output format.
    """
    acc_fmt = FORMATS[acc]
    out = FORMATS[out_format] if isinstance(out_format, str) else out_format
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    rows, n = x.shape
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    b = np.zeros(n) if b is None else np.asarray(b, dtype=np.float64)
    u, eta = acc_fmt.unit_roundoff, acc_fmt.min_subnormal / 2
    with np.errstate(all="ignore"):
        y_abs, err_n = _normalized_bound(x, float(p), eps, acc_fmt, pow_ulps)
        z_abs, pre = _affine_error(affine, y_abs, err_n, w, b, u, eta, u)
        if out.precision >= acc_fmt.precision:
            total = pre
        else:
            total = pre + out.unit_roundoff * (z_abs + pre) + out.min_subnormal / 2
    unsafe = ~acc_fmt.is_representable(x).all(axis=1)
    unsafe |= ~np.isfinite(x).all(axis=1)
    if not (acc_fmt.is_representable(w).all() and acc_fmt.is_representable(b).all()):
        unsafe[:] = True
    pre = np.where(unsafe[:, None] | np.isnan(pre), np.inf, pre * SAFETY)
    with np.errstate(invalid="ignore"):
        overflow = ~(z_abs + total <= out.max_finite)
    total = np.where(unsafe[:, None] | overflow | np.isnan(total), np.inf, total * SAFETY)
    return ForwardBound(pre_rounding=pre, total=total)
