"""Double-word ("double-double") arithmetic that carries a rigorous bound on its own error.

A tracked value is a triple (hi, lo, err): hi + lo is the computed number and err bounds
|hi + lo − exact|, the exact real value the computation stands for. Exact inputs enter with
lo = err = 0. Every rounding inside an operation is itself captured by an error-free
transformation, so an operation's new error is known exactly (as a sum of captured terms)
rather than bounded a priori — and an exact operation adds nothing, which lets the tier prove
results such as "this centred value is exactly 0".

    add(a, b) = TwoSum(s, w) with (s, σ) = TwoSum(a_hi, b_hi), (v, e1) = TwoSum(a_lo, b_lo),
                (w, e2) = TwoSum(σ, v).
        hi + lo = s + w = a_hi + b_hi + a_lo + b_lo − e1 − e2 exactly, so the new error is
        e1 + e2:   err = err_a + err_b + (|e1| + |e2|).
    mul(a, b) = TwoSum(p, q) with (p, π) = TwoProduct(a_hi, b_hi), (t1, f1) = TwoProduct(a_hi, b_lo),
                (t2, f2) = TwoProduct(a_lo, b_hi), (t, f3) = TwoSum(t1, t2), (q, f4) = TwoSum(π, t),
                and a_lo·b_lo = g + f5 (TwoProduct) dropped.
        (a_hi + a_lo)(b_hi + b_lo) = p + q − f4 + f3 + f1 + f2 + g + f5 exactly, so the new error
        is bounded by |f1| + |f2| + |f3| + |f4| + |g| + |f5|; the input errors propagate as
        |â·b̂ − a·b| ≤ |â|·err_b + |b̂|·err_a + err_a·err_b, with |â| ≤ |a_hi| + |a_lo|.

TwoSum is exact for all finite inputs, subnormals included. Dekker's TwoProduct (Veltkamp
splitting, no FMA) is exact when |a·b| ≥ 2^-900 (its partial products, of 26-bit halves, then
stay far above binary64's underflow threshold, 2^-1022) and when a or b is 0; otherwise each
of its few roundings errs by at most 2^-1075, and ETA = 2^-1066 per TwoProduct covers that
with room. Overflow turns hi or err into inf/NaN, which `certified_sign` never counts as proof.

The bounds are summed in float64, rounding to nearest: a chain of k additions of non-negative
terms comes out low by at most a relative (1 − u)^k; BOUND_SAFETY covers k ≤ 2^30, applied
once, where a bound is used (`certified_sign`).

`rounding_scale` and `propagation_scale` (1 in use) multiply the two kinds of terms: the tests
run deliberately wrong variants (a bound halved, a term dropped) through the same code.
"""

from __future__ import annotations

import numba

U = 2.0**-53
ETA = 2.0**-1066
BOUND_SAFETY = 1.0 + 2.0**-20
_SPLITTER = 134217729.0  # 2^27 + 1 (Veltkamp)
_EXACT_PRODUCTS = 2.0**-900  # TwoProduct is exact at and above this magnitude

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def two_sum(a, b):
    """s + e = a + b exactly (Knuth; no precondition on the magnitudes)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@_jit
def _split(a):
    c = _SPLITTER * a
    high = c - (c - a)
    return high, a - high


@_jit
def two_prod(a, b):
    """p + e = a·b exactly barring underflow (Dekker's TwoProduct, Ogita–Rump–Oishi 2005, Alg. 3.3)."""
    p = a * b
    a1, a2 = _split(a)
    b1, b2 = _split(b)
    return p, a2 * b2 - (((p - a1 * b1) - a2 * b1) - a1 * b2)


@_jit
def add(a_hi, a_lo, a_err, b_hi, b_lo, b_err, rounding_scale):
    """(hi, lo, err) of a + b (module docstring)."""
    s, sigma = two_sum(a_hi, b_hi)
    v, e1 = two_sum(a_lo, b_lo)
    w, e2 = two_sum(sigma, v)
    hi, lo = two_sum(s, w)
    return hi, lo, a_err + b_err + rounding_scale * (abs(e1) + abs(e2))


@_jit
def _underflow_slack(a, b, p):
    """ETA when TwoProduct(a, b) may have lost bits to underflow, else 0."""
    return ETA if (abs(p) < _EXACT_PRODUCTS and a != 0.0 and b != 0.0) else 0.0


@_jit
def mul(a_hi, a_lo, a_err, b_hi, b_lo, b_err, rounding_scale, propagation_scale):
    """(hi, lo, err) of a·b (module docstring); the terms that are 0 when a_lo or b_lo is 0 are
    skipped (a product of two doubles is one TwoProduct)."""
    p, pi = two_prod(a_hi, b_hi)
    rounding = _underflow_slack(a_hi, b_hi, p)
    if a_lo == 0.0 and b_lo == 0.0:
        hi, lo = two_sum(p, pi)
    else:
        t1, f1 = two_prod(a_hi, b_lo)
        t2, f2 = two_prod(a_lo, b_hi)
        t, f3 = two_sum(t1, t2)
        q, f4 = two_sum(pi, t)
        g, f5 = two_prod(a_lo, b_lo)
        hi, lo = two_sum(p, q)
        rounding += ((abs(f1) + abs(f2)) + (abs(f3) + abs(f4)) + (abs(g) + abs(f5))
                     + _underflow_slack(a_hi, b_lo, t1) + _underflow_slack(a_lo, b_hi, t2)
                     + _underflow_slack(a_lo, b_lo, g))
    propagated = 0.0
    if a_err != 0.0 or b_err != 0.0:
        propagated = (abs(a_hi) + abs(a_lo)) * b_err + (abs(b_hi) + abs(b_lo)) * a_err + a_err * b_err
    return hi, lo, rounding_scale * rounding + propagation_scale * propagated


@_jit
def certified_sign(hi, lo, err):
    """+1 / −1 when |hi + lo − exact| ≤ err proves the exact value's sign, else 0.

    hi + lo is a normalized double word (|lo| ≤ u·|hi|, both from TwoSum), so
    |hi + lo| ≥ |hi|(1 − u); the bound gets BOUND_SAFETY (module docstring).
    """
    if not (abs(hi) < 1e308 and err < 1e308):  # inf or NaN anywhere: nothing is proven
        return 0
    if abs(hi) * (1.0 - U) > err * BOUND_SAFETY:
        return 1 if hi > 0 else -1
    return 0


@_jit
def is_exact_zero(hi, lo, err):
    """The exact value is 0: computed 0 with no error at all."""
    return hi == 0.0 and lo == 0.0 and err == 0.0
