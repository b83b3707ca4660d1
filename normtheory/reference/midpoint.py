"""The second exact tier: which side of a rounding midpoint does a LayerNorm/RMSNorm output lie on?

The float64 pass (rowpass.py) leaves an element undecided when its interval [ŷ − E, ŷ + E]
straddles a rounding boundary m between two adjacent format values. Then only the sign of
y − m is missing, and that sign is a polynomial question — no square root, no division. With
C_i = d·x_i − Σx (LayerNorm, k = 3) or x_i (RMSNorm, k = 1), Q = Σ C_i², w̃ the weight factor
(1, w or 1 + w), B = m − b (b = 0 without a bias) and A0 = C_j·w̃:

    eps inside:   y = A0/(g·√S) + b with S = (Q + d^k·eps)/d^k·g²/… — in short
                  sign(y − m) = sign(A − B·√(T/d)),  A = A0,  T = Q + d^k·eps
    eps outside:  sign(y − m) = sign(A − B·√(Q/d)),  A = A0 − g·B·eps,  g = d (LN) or 1 (RMS)

and for A, B of one sign, A − B√(T/d) has the sign of ±D with

    D = d·A² − B²·T        (T = Q outside).

Derivation (eps inside, LayerNorm): c_j = C_j/d, S = Σc²/d + eps = Q/d³ + eps, y − m =
(c_j w̃ − B√S)/√S, and d·(c_j w̃ − B√S) = A0 − B√(d²S) = A0 − B√((Q + d³eps)/d). RMSNorm:
S = (Q + d·eps)/d directly. Outside: y − m = (c_j w̃ − B·eps − B·σ)/N with σ = √(Σc²/d),
and d·σ = √(Q/d) (LN), σ = √(Q/d) (RMS). Positive factors leave every sign alone.

Everything is sums and products of binary64 numbers, evaluated in double-word arithmetic that
carries its own rigorous error bound (doubleword.py): about 2^-100 relative where float64 gave
2^-50, and exact operations stay exact, so exact zeros (A0 = 0: y = b) and exact ties (D = 0:
y = m, ties to even) are proven too. Where the bounds prove nothing the element is left to arb
and the exact Q(√R) step (ziv.py), which stay the last word.

Q for RMSNorm is first taken from a vectorized Sum2 of the exact squares (x has at most 26
significand bits here, so x² is exact), with the Sum2 bound as its error; a row where that
leaves elements undecided is redone with the double-word sums (`exact_row_sums`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from normtheory.formats import FloatFormat
from normtheory.reference.doubleword import U, add, certified_sign, is_exact_zero, mul, two_prod, two_sum
from normtheory.reference.formatbits import quantum_at, round_to_format

MAX_WIDTH = 2**26  # d² exact in binary64; the bound's own rounding stays within BOUND_SAFETY
STRADDLES, UNDECIDED = 1, 2  # rowpass.py's statuses of the elements this tier takes
_LANES = 64  # whole blocks of exactly this many, then a tail: see rowpass.LANES


@numba.njit(cache=True, nogil=True, error_model="numpy")
def exact_row_sums(x_row, d, centred, rs, ps):
    """Tracked S = Σx (LayerNorm; zero otherwise) and Q = Σ C_i², as (hi, lo, err) each.
    rs, ps: the rounding and propagation scales of doubleword.py (1 in use)."""
    s_hi, s_lo, s_err = 0.0, 0.0, 0.0
    if centred:
        for v in x_row:
            s_hi, s_lo, s_err = add(s_hi, s_lo, s_err, np.float64(v), 0.0, 0.0, rs)
    q_hi, q_lo, q_err = 0.0, 0.0, 0.0
    for v in x_row:
        c_hi, c_lo, c_err = centred_entry(np.float64(v), d, centred, s_hi, s_lo, s_err, rs)
        sq_hi, sq_lo, sq_err = mul(c_hi, c_lo, c_err, c_hi, c_lo, c_err, rs, ps)
        q_hi, q_lo, q_err = add(q_hi, q_lo, q_err, sq_hi, sq_lo, sq_err, rs)
    return s_hi, s_lo, s_err, q_hi, q_lo, q_err


@numba.njit(cache=True, nogil=True, error_model="numpy")
def quick_square_sum(x_row, rs):
    """RMSNorm's Q = Σx² by Sum2 in lanes of exact squares (x of ≤ 26 significand bits, |x| ≥
    2^-450 or 0, so x² is exact): (hi, lo, err) with err = γ_{n+L}²·Σx² (rowpass.py's bound,
    without the final rounding, since hi and lo are kept apart)."""
    n = x_row.shape[0]
    hi, lo = np.zeros(_LANES), np.zeros(_LANES)
    full = n - n % _LANES
    for j0 in range(0, full, _LANES):
        _square_lanes(x_row, j0, _LANES, hi, lo)
    _square_lanes(x_row, full, n - full, hi, lo)
    total = hi[0]
    errors = lo.sum()
    for k in range(1, _LANES):
        total, e = two_sum(total, hi[k])
        errors += e
    q_hi, q_lo = two_sum(total, errors)
    gamma = (n + _LANES) * U / (1.0 - (n + _LANES) * U)
    return q_hi, q_lo, rs * gamma * gamma * (abs(q_hi) + abs(q_lo)) * (1.0 + 4.0 * gamma)


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _square_lanes(x_row, j0, count, hi, lo):
    """Entries j0..j0 + count − 1 into TwoSum lanes 0..count − 1 of Σx²."""
    for k in range(count):
        v = np.float64(x_row[j0 + k])
        p = v * v
        s = hi[k] + p
        bb = s - hi[k]
        lo[k] += (hi[k] - (s - bb)) + (p - bb)
        hi[k] = s


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def centred_entry(v, d, centred, s_hi, s_lo, s_err, rs):
    """C_j = d·x_j − Σx (LayerNorm; d·x_j exact by TwoProduct) or x_j (exact)."""
    if not centred:
        return v, 0.0, 0.0
    p, e = two_prod(float(d), v)
    return add(p, e, 0.0, -s_hi, -s_lo, s_err, rs)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def row_term(q_hi, q_lo, q_err, d, eps, inside, centred, rs, ps):
    """T = Q + d^k·eps (eps inside) or Q (outside), tracked."""
    if not inside:
        return q_hi, q_lo, q_err
    df = float(d)
    if centred:  # d³·eps: d² is exact (d ≤ 2^26), d²·d exact as a double word
        k_hi, k_lo = two_prod(df * df, df)
        k_hi, k_lo, k_err = mul(k_hi, k_lo, 0.0, eps, 0.0, 0.0, rs, ps)
    else:
        k_hi, k_lo, k_err = mul(df, 0.0, 0.0, eps, 0.0, 0.0, rs, ps)
    return add(q_hi, q_lo, q_err, k_hi, k_lo, k_err, rs)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def discriminant(a_hi, a_lo, a_err, t_hi, t_lo, t_err, b_hi, b_lo, d, eps, inside, centred, rs, ps):
    """(A, D) as tracked triples (module docstring), from A0 = C_j·w̃, T and the exact double
    word B = m − b."""
    df = float(d)
    if not inside:  # A = A0 − g·B·eps
        ge_hi, ge_lo = two_prod(df if centred else 1.0, eps)
        be_hi, be_lo, be_err = mul(b_hi, b_lo, 0.0, ge_hi, ge_lo, 0.0, rs, ps)
        a_hi, a_lo, a_err = add(a_hi, a_lo, a_err, -be_hi, -be_lo, be_err, rs)
    sq_hi, sq_lo, sq_err = mul(a_hi, a_lo, a_err, a_hi, a_lo, a_err, rs, ps)
    l_hi, l_lo, l_err = mul(df, 0.0, 0.0, sq_hi, sq_lo, sq_err, rs, ps)
    bb_hi, bb_lo, bb_err = mul(b_hi, b_lo, 0.0, b_hi, b_lo, 0.0, rs, ps)
    r_hi, r_lo, r_err = mul(bb_hi, bb_lo, bb_err, t_hi, t_lo, t_err, rs, ps)
    d_hi, d_lo, d_err = add(l_hi, l_lo, l_err, -r_hi, -r_lo, r_err, rs)
    return a_hi, a_lo, a_err, d_hi, d_lo, d_err


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def side(a_hi, a_lo, a_err, d_hi, d_lo, d_err, b_hi):
    """sign(y − m) when the bounds prove it (+1, −1, or 0 for an exact tie y = m), else 2.

    y − m has the sign of A − B·√(T/d): A ≥ 0 ≥ B or A ≤ 0 ≤ B decide it alone (not both 0:
    A0 = 0 is handled before); for A, B of one sign, A − B√(T/d) = ±D/(d·(A + B√(T/d))).
    """
    s_a = certified_sign(a_hi, a_lo, a_err)
    if s_a == 0:
        return 2
    s_b = 1 if b_hi > 0 else (-1 if b_hi < 0 else 0)  # B is an exact double word: hi = 0 iff B = 0
    if s_b == 0 or s_b != s_a:
        return s_a
    if is_exact_zero(d_hi, d_lo, d_err):
        return 0
    s_d = certified_sign(d_hi, d_lo, d_err)
    return s_a * s_d if s_d != 0 else 2


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def exact_zero(estimate):
    """An exact zero takes the sign of the float64 evaluation when that is ±0, else +0 (ziv.py)."""
    return math.copysign(0.0, estimate) if estimate == 0.0 else 0.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def decide_one(c, f_hi, f_lo, bias, has_bias, t, d, eps, inside, centred, slot, straddles, fmt_params, rs, ps):
    """The rounded y (float64), or NaN where the bounds prove nothing. c = C_j and t = T as
    tracked triples; slot and straddles as rowpass.py leaves them."""
    precision, emin, min_normal, max_finite, has_inf = fmt_params
    a_hi, a_lo, a_err = mul(c[0], c[1], c[2], f_hi, f_lo, 0.0, rs, ps)
    if is_exact_zero(a_hi, a_lo, a_err):  # y = 0·r + b exactly
        value = bias if has_bias else 0.0
        if value == 0.0:
            return exact_zero(slot)
        return round_to_format(value, precision, emin, min_normal, max_finite, has_inf)
    if not straddles:
        return math.nan
    near = slot
    far = math.copysign(abs(near) + quantum_at(abs(near), precision, emin), near)
    m = 0.5 * (near + far)  # exact: the two values have at most 25 significant bits
    b_hi, b_lo = two_sum(m, -bias) if has_bias else (m, 0.0)
    a_hi, a_lo, a_err, d_hi, d_lo, d_err = discriminant(a_hi, a_lo, a_err, t[0], t[1], t[2], b_hi, b_lo, d, eps,
                                                        inside, centred, rs, ps)
    sign = side(a_hi, a_lo, a_err, d_hi, d_lo, d_err, b_hi)
    if sign == 0:  # y = m exactly: ties to even, which rounding the midpoint itself gives
        return round_to_format(m, precision, emin, min_normal, max_finite, has_inf)
    if sign == 2:
        return math.nan
    return far if (sign > 0) == (m > 0) else near  # |y| > |m| exactly when y − m has m's sign


@numba.njit(cache=True, nogil=True, error_model="numpy")
def resolve_row(x_row, d, centred, eps, inside, f_hi, f_lo, bias, has_bias, fmt_params, rounded, status, rs, ps):
    """Decide, in place, this row's elements with status STRADDLES or UNDECIDED (their status
    becomes 0); returns how many. RMSNorm tries the quick Q first, then the exact sums."""
    decided = 0
    if not centred:
        q = quick_square_sum(x_row, rs)
        done, left = _resolve_pass(x_row, d, centred, eps, inside, f_hi, f_lo, bias, has_bias, fmt_params, rounded,
                                   status, (0.0, 0.0, 0.0), q, rs, ps)
        decided += done
        if left == 0:
            return decided
    s_hi, s_lo, s_err, q_hi, q_lo, q_err = exact_row_sums(x_row, d, centred, rs, ps)
    done, _ = _resolve_pass(x_row, d, centred, eps, inside, f_hi, f_lo, bias, has_bias, fmt_params, rounded, status,
                            (s_hi, s_lo, s_err), (q_hi, q_lo, q_err), rs, ps)
    return decided + done


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _resolve_pass(x_row, d, centred, eps, inside, f_hi, f_lo, bias, has_bias, fmt_params, rounded, status, s, q, rs,
                  ps):
    """One pass of `resolve_row` with the row sums S and Q given: (decided, left undecided)."""
    t = row_term(q[0], q[1], q[2], d, eps, inside, centred, rs, ps)
    decided, left = 0, 0
    for j in range(x_row.shape[0]):
        if status[j] != STRADDLES and status[j] != UNDECIDED:
            continue
        c = centred_entry(np.float64(x_row[j]), d, centred, s[0], s[1], s[2], rs)
        value = decide_one(c, f_hi[j], f_lo[j], bias[j], has_bias, t, d, eps, inside, centred, rounded[j],
                           status[j] == STRADDLES, fmt_params, rs, ps)
        if math.isnan(value):
            left += 1
        else:
            rounded[j] = value
            status[j] = 0
            decided += 1
    return decided, left


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _elements_kernel(x, d, centred, eps, inside, f_hi, f_lo, bias, has_bias, fmt_params, rows, cols, slot, straddles,
                     rs, ps, out):
    for k in range(rows.size):
        i, j = rows[k], cols[k]
        s_hi, s_lo, s_err, q_hi, q_lo, q_err = exact_row_sums(x[i], d, centred, rs, ps)
        t = row_term(q_hi, q_lo, q_err, d, eps, inside, centred, rs, ps)
        c = centred_entry(x[i, j], d, centred, s_hi, s_lo, s_err, rs)
        out[k] = decide_one(c, f_hi[j], f_lo[j], bias[j], has_bias, t, d, eps, inside, centred, slot[k],
                            straddles[k], fmt_params, rs, ps)


def weight_factor_words(affine: str, w: np.ndarray):
    """w̃ as an exact double word (hi, lo): 1, w, or 1 + w by TwoSum."""
    n = w.shape[0]
    if affine == "none":
        return np.ones(n), np.zeros(n)
    if affine == "offset_weight":
        hi = 1.0 + w
        bb = hi - 1.0
        return hi, (1.0 - (hi - bb)) + (w - bb)
    return np.ascontiguousarray(w, dtype=np.float64), np.zeros(n)


def format_params(fmt: FloatFormat) -> tuple:
    return (fmt.precision, fmt.emin, fmt.min_normal, fmt.max_finite, fmt.has_inf)


def decide_elements(*, centred: bool, x: np.ndarray, d: int, eps: float, inside: bool, affine: str, w: np.ndarray,
                    b: np.ndarray, fmt: FloatFormat, rows: np.ndarray, cols: np.ndarray, slot: np.ndarray,
                    straddles: np.ndarray, rounding_scale: float = 1.0, propagation_scale: float = 1.0) -> np.ndarray:
    """This tier, element by element (exact sums only), for tests and diagnostics: rounded y
    (float64) for the elements (rows[k], cols[k]), NaN where it proves nothing."""
    out = np.full(rows.shape[0], np.nan)
    if rows.size == 0 or d > MAX_WIDTH or not math.isfinite(eps):
        return out
    f_hi, f_lo = weight_factor_words(affine, np.asarray(w, dtype=np.float64))
    _elements_kernel(np.ascontiguousarray(x, dtype=np.float64), int(d), centred, float(eps), inside, f_hi, f_lo,
                     np.ascontiguousarray(b, dtype=np.float64), affine == "weight_bias", format_params(fmt),
                     np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64),
                     np.asarray(slot, dtype=np.float64), np.asarray(straddles, dtype=np.bool_),
                     float(rounding_scale), float(propagation_scale), out)
    return out
