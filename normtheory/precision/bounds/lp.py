"""A-priori componentwise error bound of the stable Lp kernel (normtheory.kernels.lp).

The algorithm (every step rounded to nearest in the accumulator A, unit roundoff u, η = half
the smallest subnormal of A; n = d entries per row; emulated in emulation/lp.py):
    â = fl(√eps)                      (√eps formed in binary64, then rounded to A)
    K = max(max|x_i|, â)              (exact: a comparison)
    ẑ_i = fl(x_i / K)                 |ẑ_i − ζ_i| ≤ u·ζ_i + η,  ζ_i = |x_i|/K ≤ 1
    τ̂_i = pow(|ẑ_i|, p)              within k ulps of the exact power of the rounded ẑ_i
    f̂ = pow(fl(â/K), p)              (= 1 exactly when K = â)
    Ŝ = Σ τ̂_i in any order           |Ŝ − Στ̂| ≤ γ_{n−1}·Στ̂ (nonnegative terms, Higham §4.2)
    t̂ = fl(fl(Ŝ/d) + f̂)
    R̂ = pow(t̂, fl(1/p))              the exponent itself is rounded: a factor t̂^(±u/p)
    ŷ_i = fl(ẑ_i / R̂), then the affine step and the output rounding as in bounds/forward.py.
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
from numpy.typing import ArrayLike

from normtheory.formats import FloatFormat, as_format
from normtheory.precision.bounds.affine import affine_error, output_rounding_error
from normtheory.precision.bounds.forward import ForwardBound
from normtheory.precision.toolkit.rounding import F64_SLOP, HEADROOM, SAFETY, Gammas

DEFAULT_POW_ULPS = 4


def _interval_pow(lo: np.ndarray, hi: np.ndarray, p: float, rel: float,
                  absolute: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on pow(v, p) for v in [lo, hi] (lo ≥ 0) with relative error rel and absolute error `absolute`."""
    lo = np.maximum(lo, 0.0)
    return np.maximum(lo**p * (1 - rel) - absolute, 0.0), hi**p * (1 + rel) + absolute


def _deviation(lo: np.ndarray, hi: np.ndarray, exact: np.ndarray) -> np.ndarray:
    return np.maximum(hi - exact, exact - lo)


def rounded_sqrt_eps(eps: float, acc: FloatFormat) -> float:
    return float(acc.round_to_float64(math.sqrt(eps)))


def _normalized_bound(x: np.ndarray, *, p: float, eps: float, acc: FloatFormat,
                      pow_ulps: int) -> tuple[np.ndarray, np.ndarray]:
    """(|y|: exact normalized magnitudes, bound on |ŷ − y|) before the affine step, per element."""
    parts = _normalized_parts(x, p=p, eps=eps, acc=acc, pow_ulps=pow_ulps)
    return parts["y"], parts["err"]


def _normalized_parts(x: np.ndarray, *, p: float, eps: float, acc: FloatFormat, pow_ulps: int) -> dict[str, np.ndarray]:
    """The forward's intervals, for the backward bound too: |y| and its error bound, the kernel's K
    and the exact N per row, and (finite p) the exact R = N/K with the interval [R_lo, R_hi] that
    holds the computed R̂ — the same derivation as the module docstring."""
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
        return {"y": y, "err": err, "K": K, "N": N}
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
    return {"y": y, "err": _deviation(y_lo, y_hi, y), "K": K, "N": K * R, "R": R, "R_lo": R_lo, "R_hi": R_hi}


def stable_forward_bound(x: ArrayLike, w: ArrayLike | None = None, b: ArrayLike | None = None, *, p: float, eps: float,
                         affine: str = "none", out_format: str | FloatFormat = "fp32", acc: str | FloatFormat = "fp32",
                         pow_ulps: int = DEFAULT_POW_ULPS) -> ForwardBound:
    """Componentwise bound on |ŷ − y| of the stable Lp kernel (y exact, eps inside).

    Infinite where no bound holds: a zero row with eps = 0 (the exact value is NaN), inputs
    or weights not exact in the accumulator, an output that may overflow the output format.
    """
    acc_fmt = as_format(acc)
    out = as_format(out_format)
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    rows, n = x.shape
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    b = np.zeros(n) if b is None else np.asarray(b, dtype=np.float64)
    u, eta = acc_fmt.unit_roundoff, acc_fmt.min_subnormal / 2
    with np.errstate(all="ignore"):
        y_abs, err_n = _normalized_bound(x, p=float(p), eps=eps, acc=acc_fmt, pow_ulps=pow_ulps)
        z_abs, pre = affine_error(affine, y_abs, err_n, w, b, u=u, eta=eta, offset_u=u)
        total = output_rounding_error(pre, z_abs, out=out, acc=acc_fmt)
    unsafe = ~acc_fmt.is_representable(x).all(axis=1)
    unsafe |= ~np.isfinite(x).all(axis=1)
    if not (acc_fmt.is_representable(w).all() and acc_fmt.is_representable(b).all()):
        unsafe[:] = True
    pre = np.where(unsafe[:, None] | np.isnan(pre), np.inf, pre * SAFETY)
    with np.errstate(invalid="ignore"):
        overflow = ~(z_abs + total <= out.max_finite)
    total = np.where(unsafe[:, None] | overflow | np.isnan(total), np.inf, total * SAFETY)
    return ForwardBound(pre_rounding=pre, total=total)


# ---- backward -------------------------------------------------------------------------------

def stable_backward_bound(x: ArrayLike, gy: ArrayLike, w: ArrayLike | None = None, *, p: float, eps: float,
                          affine: str = "none", grad_format: str | FloatFormat = "fp32",
                          w_format: str | FloatFormat | None = None, acc: str | FloatFormat = "fp32",
                          pow_ulps: int = DEFAULT_POW_ULPS, fma: bool = True) -> dict[str, np.ndarray]:
    """Worst-case componentwise bounds on gx (rows, n), gw and gb (n,) of the stable kernel's
    backward (lp_emulate.emulate_stable_backward), any summation order; inf where none holds.

    Exact: gx = (g − K_b·φ)/N, K_b = Σg·y/d, φ = sign(x)|y|^(p−1) (p = inf: d·sign/k on the k
    entries of largest |x|, 0 where the floor √eps is the maximum), g = gy·w. Derivation (each
    step's algebra in proofs/test_lp_backward_algebra.py), u, η of the accumulator, h = n:
     L1. ĝ = fl(gy·w): E_g = u|gy·w| + η (exact without a weight).
     L2. The forward's E_y bounds |ŷ − y| (ŷ, y signed: ŷ has the sign of x or is 0).
         Σĝŷ in any order (fused or rounded products, at most n roundings a term):
         |Σĝŷ − Σgy| ≤ E_p + γ_n·Σ(|gy| + E_p), E_p = |g|E_y + E_g(|y| + E_y) termwise; then
         K̂_b = fl(fl(·)·fl(1/d)): E_K = ((1 + γ₂)E_B + γ₂|Σgy|)/d + η.
     L3. φ̂ = pow(|ŷ|, p − 1) with |ŷ| in [|y| − E_y, |y| + E_y] ∩ [0, ∞): p − 1 ≥ 0 makes the
         power monotone, so φ̂ lies in [lo^(p−1)(1 − k) − a, hi^(p−1)(1 + k) + a] (pow within
         pow_ulps ulps: k = 2·pow_ulps·u, a = 2·pow_ulps·η); p = 1: sign(x), exact; p = 2: ŷ
         itself (E_φ = E_y); p = inf: fl(d/k), E_φ = u·d/k — and no bound on a row where the
         kernel's floor fl(√eps) and √eps disagree about which is the maximum.
     L4. t̂ = fl(ĝ − φ̂K̂_b): with P = (|φ| + E_φ)(|K_b| + E_K) and u' = 0 under FMA, u otherwise
         (the product rounded first), |t̂ − T| ≤ E_g + |φ|E_K + E_φ|K_b| + E_φE_K
         + u(|g| + E_g + P(1 + u')) + u'P + 2η =: E_T.
     L5. gx̂ = fl(fl(t̂/R̂)/K) = t̂/(R̂K)(1 + δ₁)(1 + δ₂) (+ underflow): R̂ in [R_lo, R_hi] (the
         forward's interval), so with ρ = max(R/R_lo − 1, 1 − R/R_hi) and ρ_G = (1 + ρ)(1 + u)² − 1,
         |gx̂ − T/N| ≤ ((1 + ρ_G)E_T + ρ_G|T|)/N + 2η(1 + 1/K). p = inf: one division by K, and
         ρ = |N/K − 1| (K = N unless the floor is the maximum).
     L6. Output rounding to the gradient format: + u_o(|gx| + E) + η_o (none at least as precise).
     gw_j = Σ_rows gy·ŷ: Σ|gy|E_y + γ_R·Σ(|gy·y| + |gy|E_y) + R·η; gb_j = Σ_rows gy: γ_{R−1}Σ|gy|.
    """
    acc_fmt, grad = as_format(acc), as_format(grad_format)
    w_out = as_format(w_format or grad)
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    gy = np.asarray(gy, dtype=np.float64).reshape(x.shape)
    p = float(p)
    with np.errstate(all="ignore"):
        parts = _normalized_parts(x, p=p, eps=eps, acc=acc_fmt, pow_ulps=pow_ulps)
        result = _stable_backward(x, gy, w, p=p, eps=eps, affine=affine, grad=grad, w_out=w_out, acc=acc_fmt,
                                  pow_ulps=pow_ulps, fma=fma, parts=parts)
    unsafe = ~acc_fmt.is_representable(x).all(axis=1) | ~np.isfinite(x).all(axis=1)
    unsafe |= ~acc_fmt.is_representable(gy).all(axis=1) | ~np.isfinite(gy).all(axis=1)
    if affine != "none" and not acc_fmt.is_representable(np.asarray(w, dtype=np.float64)).all():
        unsafe[:] = True
    out = {"gx": np.where(unsafe[:, None] | np.isnan(result["gx"]), np.inf, result["gx"] * SAFETY)}
    for q in ("gw", "gb"):
        if q in result:
            out[q] = np.where(unsafe.any() | np.isnan(result[q]), np.inf, result[q] * SAFETY)
    return out


def _stable_backward(x: np.ndarray, gy: np.ndarray, w: ArrayLike | None, *, p: float, eps: float, affine: str,
                     grad: FloatFormat, w_out: FloatFormat, acc: FloatFormat, pow_ulps: int, fma: bool,
                     parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Steps L1–L6 and the column sums, before the unsafe rows and SAFETY."""
    u, eta = acc.unit_roundoff, acc.min_subnormal / 2
    top = acc.max_finite / HEADROOM
    y = np.sign(x) * parts["y"]  # exact signed normalized values
    g, E_g = _weighted_gradient(gy, w, affine=affine, u=u, eta=eta)  # L1
    K_b, aK, E_K, overflow = _row_product_sum(g, E_g, y, parts, acc=acc)  # L2
    phi, E_phi, rho, divisions, ambiguous = _direction(x, y, parts, p=p, eps=eps, acc=acc, pow_ulps=pow_ulps)  # L3
    aphi, ag = np.abs(phi), np.abs(g)
    # L4
    u_product = 0.0 if fma else u  # a contracted g − φK rounds once
    product = (aphi + E_phi) * (aK + E_K)[:, None]
    E_T = (E_g + aphi * E_K[:, None] + E_phi * aK[:, None] + E_phi * E_K[:, None]
           + u * (ag + E_g + product * (1 + u_product)) + u_product * product + 2 * eta)
    T = g - phi * K_b[:, None]
    aT = np.abs(T) + F64_SLOP * (ag + aphi * aK[:, None])
    # L5
    K, N = parts["K"], parts["N"]
    rho_G = ((1 + rho) * (1 + u) ** divisions - 1)[:, None]
    inv_N = (1 / N)[:, None]
    gx_pre = ((1 + rho_G) * E_T + rho_G * aT) * inv_N + 2 * eta * (1 + 1 / K[:, None])
    reach = (aT + E_T) * (1 + rho_G)  # |t̂| and, divided by N (by N/K), |gx̂| (|t̂/R̂|)
    overflow |= (product.max(axis=1) > top) | (reach.max(axis=1) > top)
    overflow |= (reach.max(axis=1) * np.maximum(1 / N, K / N) > top)
    gx_pre = np.where((overflow | ambiguous)[:, None], np.inf, gx_pre)
    gx = output_rounding_error(gx_pre, aT * inv_N, out=grad, acc=acc)  # L6
    out = {"gx": np.where(aT * inv_N + gx > grad.max_finite, np.inf, gx)}
    out.update(_column_sums(gy, y, parts, affine=affine, acc=acc, w_out=w_out))
    return out


def _weighted_gradient(gy: np.ndarray, w: ArrayLike | None, *, affine: str, u: float,
                       eta: float) -> tuple[np.ndarray, np.ndarray]:
    """L1: (g = gy·w exactly, bound on |ĝ − g|)."""
    if affine == "none":
        return gy, np.zeros_like(gy)
    w = np.asarray(w, dtype=np.float64)
    return gy * w, u * np.abs(gy) * np.abs(w) + eta


def _row_product_sum(g: np.ndarray, E_g: np.ndarray, y: np.ndarray, parts: dict[str, np.ndarray], *,
                     acc: FloatFormat) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """L2: (K_b = Σg·y/d exactly, its magnitude, the bound E_K on |K̂_b − K_b|, rows that may overflow)."""
    u, eta = acc.unit_roundoff, acc.min_subnormal / 2
    gamma = Gammas(u, "worst")
    n = g.shape[1]
    top = acc.max_finite / HEADROOM
    ag, ay, E_y = np.abs(g), parts["y"], parts["err"]
    E_p = ag * E_y + E_g * (ay + E_y)
    B = (g * y).sum(axis=1)
    aB = np.abs(B) + F64_SLOP * (ag * ay).sum(axis=1)
    E_B = E_p.sum(axis=1) + gamma(n) * ((ag * ay).sum(axis=1) + E_p.sum(axis=1)) + n * eta
    K_b, aK = B / n, aB / n
    E_K = ((1 + gamma(2)) * E_B + gamma(2) * aB) / n + eta
    overflow = ((ag * ay + E_p).sum(axis=1) * (1 + gamma(n)) > top) | ((ag + E_g).max(axis=1) > top)
    return K_b, aK, E_K, overflow


def _direction(x: np.ndarray, y: np.ndarray, parts: dict[str, np.ndarray], *, p: float, eps: float, acc: FloatFormat,
               pow_ulps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """L3 and L5's ρ: (φ exactly, bound E_φ on |φ̂ − φ|, ρ, the divisions by the scale, rows where
    the kernel's floor and the exact one disagree about the maximum)."""
    u, eta = acc.unit_roundoff, acc.min_subnormal / 2
    rows, n = x.shape
    sign, ay, E_y = np.sign(x), parts["y"], parts["err"]
    if math.isinf(p):
        magnitudes = np.abs(x)
        largest = magnitudes.max(axis=1, keepdims=True)
        a_hat = rounded_sqrt_eps(eps, acc)
        kernel_max = (largest >= a_hat) & (largest > 0)
        exact_max = (largest**2 >= eps) & (largest > 0)  # binary64 squares of p ≤ 24-bit values: exact
        at_max = (magnitudes == largest) & exact_max
        ties = np.maximum(at_max.sum(axis=1, keepdims=True), 1)
        phi = np.where(at_max, sign * n / ties, 0.0)
        E_phi = np.where(at_max, u * n / ties, 0.0)
        return phi, E_phi, np.abs(parts["N"] / parts["K"] - 1), 1, (kernel_max != exact_max)[:, 0]
    if p == 1:
        phi, E_phi = sign, np.zeros_like(x)
    elif p == 2:
        phi, E_phi = y, E_y
    else:
        rel_pow, abs_pow = 2 * pow_ulps * u, 2 * pow_ulps * eta
        lo, hi = np.maximum(ay - E_y, 0.0), ay + E_y
        exact_phi = ay ** (p - 1)
        phi_lo, phi_hi = _interval_pow(lo, hi, p - 1, rel_pow, abs_pow)
        phi, E_phi = sign * exact_phi, _deviation(phi_lo, phi_hi, exact_phi)
    R, R_lo, R_hi = parts["R"], parts["R_lo"], parts["R_hi"]
    return phi, E_phi, np.maximum(R / R_lo - 1, 1 - R / R_hi), 2, np.zeros(rows, dtype=bool)


def _column_sums(gy: np.ndarray, y: np.ndarray, parts: dict[str, np.ndarray], *, affine: str, acc: FloatFormat,
                 w_out: FloatFormat) -> dict[str, np.ndarray]:
    """gw_j = Σ_rows gy·ŷ and gb_j = Σ_rows gy (module docstring's last line), rounded to w_out."""
    u, eta = acc.unit_roundoff, acc.min_subnormal / 2
    gamma = Gammas(u, "worst")
    rows = gy.shape[0]
    top = acc.max_finite / HEADROOM
    agy, ay, E_y = np.abs(gy), parts["y"], parts["err"]
    out = {}
    if affine in ("weight", "weight_bias"):
        E_t = agy * E_y
        gw = E_t.sum(axis=0) + gamma(rows) * ((agy * ay).sum(axis=0) + E_t.sum(axis=0)) + rows * eta
        gw_mag = np.abs((gy * y).sum(axis=0)) + F64_SLOP * (agy * ay).sum(axis=0)
        gw = output_rounding_error(gw, gw_mag, out=w_out, acc=acc)
        out["gw"] = np.where((agy * (ay + E_y)).sum(axis=0) * (1 + gamma(rows)) > top, np.inf, gw)
    if affine == "weight_bias":
        gb = gamma(max(rows - 1, 0)) * agy.sum(axis=0)
        gb_mag = np.abs(gy.sum(axis=0)) + F64_SLOP * agy.sum(axis=0)
        gb = output_rounding_error(gb, gb_mag, out=w_out, acc=acc)
        out["gb"] = np.where(agy.sum(axis=0) * (1 + gamma(rows)) > top, np.inf, gb)
    return out
