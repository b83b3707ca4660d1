"""LayerNorm and RMSNorm forward, one compiled pass per row, blocks of rows on threads (threads.py).

Per row: check the inputs (finite, representable in the format), the statistics with a
rigorous relative bound, then every element ŷ with its bound E and the rounding test — do
ŷ − E and ŷ + E round to the same format value? The result is written straight into a
float32 array (every value of the formats this path serves is a float32) with a status:

    DECIDED      the rounded value (NaN rows included)
    STRADDLES    [ŷ − E, ŷ + E] holds exactly one rounding boundary, between two adjacent
                 format values; the slot holds the one nearer zero (midpoint.py decides)
    UNDECIDED    anything else (zero crossings, overflow edges); the slot holds ŷ when ŷ = ±0
                 and ±1 otherwise: all the exact step needs of ŷ is its sign and whether it is 0

The bounds are those of fastpath.py and fused.py (derivations there), with one change that
buys speed: the two sums (Σ(x − μ0) and Σĉ²) are accumulated in L = LANES independent
TwoSum chains (which the compiler runs as vector instructions), and the L lane sums are then
added by TwoSum. With p_1..p_n the terms, every TwoSum error e satisfies |e| ≤ u·|its sum|
≤ u·Σ|p|, and there are at most n + L − 1 of them, so Σ|e| ≤ γ_{n+L}·Σ|p|; the float sum of
the errors errs by at most γ_{n+L}·Σ|e|; the final hi + lo adds u·|s|. Hence
    |s − Σp| ≤ u·|s| + γ_{n+L}²·Σ|p|,   γ_k = k·u/(1 − k·u),
the Ogita–Rump–Oishi Sum2 bound (their γ_{n−1}²) with n + L in place of n − 1.

Rows are independent, so the result does not depend on the number of threads.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from normtheory.formats import FloatFormat
from normtheory.reference.bitcast import bits_of, float_of
from normtheory.reference.decide import forward_element, normalized_element
from normtheory.reference.doubleword import two_sum
from normtheory.reference.encode import BF16_BITS, FLOAT32, FP16_BITS, bf16_bits, encoding_of, fp16_bits
from normtheory.reference.fastpath import SAFETY, U
from normtheory.reference.formatbits import quantum_at, round_to_format
from normtheory.reference.midpoint import MAX_WIDTH, resolve_row, weight_factor_words
from normtheory.reference.threads import run_blocks

DECIDED, STRADDLES, UNDECIDED = 0, 1, 2
_RECHECK = 3  # transient: the vectorized test could not decide, decide_element will
# Lanes of the row sums. 64 is measured: at 16 the compiler unrolls the lane loop into scalar
# code (4x slower); with runtime lane counts it keeps every lane in memory (3x slower). The
# main loop therefore runs whole blocks of exactly LANES entries, then one short tail.
LANES = 64
# Widening that makes the float64 ends enclose [ŷ − E, ŷ + E] despite their own rounding
# (decide.py): fl(ŷ − W) ≤ ŷ − E and fl(ŷ + W) ≥ ŷ + E.
_WIDEN_REL = 1.0 + 2.0**-40
_WIDEN_ABS = 2.0**-51
_EXPONENT_ONE = np.uint64(1023)
_EXPONENT_FIELD = np.uint64(0x7FF0000000000000)
# A row whose rechecks exceed 1/_CLASSIFY_SHARE of its elements goes through the branch-free
# `_classify_rechecks` pass (a few ns per element of the row) before decide_element (some
# 40 ns per recheck, with a mispredicted branch): the two cost the same near 1/16 (measured:
# slower at the 4 % of fp32 tiny rows, faster at the 11 % of bf16 ones)
_CLASSIFY_SHARE = 16


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def decide_element(y, y_err, precision, emin, min_normal, max_finite, has_inf):
    """(status, value) for one element (module docstring)."""
    if not (math.isfinite(y) and math.isfinite(y_err)):
        return UNDECIDED, (y if y == 0.0 else math.copysign(1.0, y))
    if y_err == 0.0:  # exact: no widening (and −0 + 0 would lose the sign of zero)
        low = round_to_format(y, precision, emin, min_normal, max_finite, has_inf)
        return DECIDED, low
    widened = y_err * _WIDEN_REL + abs(y) * _WIDEN_ABS
    low = round_to_format(y - widened, precision, emin, min_normal, max_finite, has_inf)
    high = round_to_format(y + widened, precision, emin, min_normal, max_finite, has_inf)
    if math.isnan(low) or math.isnan(high):
        if math.isnan(low) and math.isnan(high):
            return DECIDED, low
    elif bits_of(low) == bits_of(high):
        return DECIDED, low
    elif low != 0.0 and high != 0.0 and (low > 0.0) == (high > 0.0) and math.isfinite(low) and math.isfinite(high):
        near, far = min(abs(low), abs(high)), max(abs(low), abs(high))
        if far == near + quantum_at(near, precision, emin):
            return STRADDLES, math.copysign(near, low)
    return UNDECIDED, (y if y == 0.0 else math.copysign(1.0, y))


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _scan_row(row, centred, precision, emin, min_normal, max_finite, has_inf, check_x):
    """(lanes hi, lo of the first row sum, any non-finite, how many values are not
    representable, degenerate: constant row (LayerNorm) or zero row). The row sum, in the same
    pass: LayerNorm's Σx in hi (a pivot only, any order will do), RMSNorm's Σx² in TwoSum lanes
    (hi, lo), exactly as `_mean_square` sums Σĉ². `centred` is a literal at each call site.

    A value is plain when |v| ≤ the largest finite and rounding |v| to the format
    (`round_by_adding`) gives |v| back — representable and finite. Only a row with something
    else in it is counted again, by `_count_exceptions`.
    """
    n = row.shape[0]
    floor_field, shift_field = bits_of(min_normal) & _EXPONENT_FIELD, np.uint64(53 - precision) << np.uint64(52)
    first = np.float64(row[0])
    consts = (floor_field, shift_field, max_finite, first)
    hi, lo = np.zeros(LANES), np.zeros(LANES)
    full = n - n % LANES
    plain, same = 0, 0
    for j0 in range(0, full, LANES):
        block = _scan_lanes(row, j0, LANES, centred, consts, hi, lo)
        plain, same = plain + block[0], same + block[1]
    block = _scan_lanes(row, full, n - full, centred, consts, hi, lo)
    plain, same = plain + block[0], same + block[1]
    finite, invalid = n, 0
    if plain < n:
        finite, invalid = _count_exceptions(row, precision, emin, min_normal, max_finite, has_inf, check_x)
    return hi, lo, finite < n, invalid, same == n


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _scan_lanes(row, j0, count, centred, consts, hi, lo):
    """`_scan_row` over entries j0..j0 + count − 1 (lanes 0..count − 1): (plain values, values
    equal to the first (LayerNorm) or to 0 (RMSNorm))."""
    floor_field, shift_field, max_finite, first = consts
    plain, same = 0, 0
    for k in range(count):
        v = np.float64(row[j0 + k])
        a = abs(v)
        plain += (a <= max_finite) & (round_by_adding(a, floor_field, shift_field) == a)
        if centred:
            same += v == first
            hi[k] += v
        else:
            same += v == 0.0
            p = v * v
            s = hi[k] + p
            bb = s - hi[k]
            lo[k] += (hi[k] - (s - bb)) + (p - bb)  # TwoSum, as in _square_lanes
            hi[k] = s
    return plain, same


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _count_exceptions(row, precision, emin, min_normal, max_finite, has_inf, check_x):
    """(finite values, values not representable — with `check_x`, else 0) of one row.

    Representable (as FloatFormat.is_representable): NaN; ±inf where the format has it; a
    normal-range value whose dropped significand bits are zero and that is ≤ the largest
    finite; a smaller one that is an integer multiple of the smallest subnormal.
    """
    low_bits = (np.uint64(1) << np.uint64(52 - (precision - 1))) - np.uint64(1)
    to_quanta = 2.0 ** -(emin - (precision - 1))  # exact scaling: |v| < min_normal here
    finite, invalid = 0, 0
    for j in range(row.shape[0]):
        v = np.float64(row[j])
        a = abs(v)
        finite += a <= 1.7976931348623157e308
        scaled = v * to_quanta
        ok = (((bits_of(v) & low_bits) == 0) & (a <= max_finite)) if a >= min_normal else (np.rint(scaled) == scaled)
        ok |= (v != v) | (has_inf & (a == math.inf))
        invalid += check_x & (not ok)
    return finite, invalid


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _combine_lanes(hi, lo):
    """hi + lo of the TwoSum lanes: the lanes' sums added by TwoSum too, every error into lo."""
    total = hi[0]
    errors = 0.0
    for k in range(1, LANES):
        total, e = two_sum(total, hi[k])
        errors += e
    return total + (lo.sum() + errors)


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _centred(v, pivot, delta, row_term, centring, u, safety):
    """(ĉ, bound on |ĉ − c|) for one entry, without branches: LayerNorm ĉ = (x − μ0) − δ with
    the bound of fused.py (`centring` = 1); RMSNorm passes μ0 = δ = B = 0 and `centring` = 0, so
    ĉ = x exactly (−0 stays −0) with bound 0. A constant LayerNorm row passes μ0 = x_0, so
    ĉ = 0 exactly, bound 0."""
    t = v - pivot
    c = t - delta
    return c, centring * (u * (abs(c) + abs(t))) * safety + row_term


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _centring(row, d, pivot, gamma2, u, safety):
    """(δ, row term B of the bound on ĉ) for LayerNorm (fused.py): T = Sum2(x − μ0) in lanes."""
    n = row.shape[0]
    hi, lo, mag = np.zeros(LANES), np.zeros(LANES), np.zeros(LANES)
    full = n - n % LANES
    for j0 in range(0, full, LANES):
        _centring_lanes(row, j0, LANES, pivot, hi, lo, mag)
    _centring_lanes(row, full, n - full, pivot, hi, lo, mag)
    T = _combine_lanes(hi, lo)
    abs_t = mag.sum() * (1.0 + (n + 1) * u)
    err_T = u * abs(T) + gamma2 * abs_t
    delta = T / d
    return delta, ((err_T + u * abs_t) / d + u * abs(delta)) * safety


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _centring_lanes(row, j0, count, pivot, hi, lo, mag):
    """Entries j0..j0 + count − 1 into lanes 0..count − 1 of Σ(x − μ0) and Σ|x − μ0|."""
    for k in range(count):  # independent lanes: the compiler runs them as vectors
        t = np.float64(row[j0 + k]) - pivot
        s = hi[k] + t
        bb = s - hi[k]
        lo[k] += (hi[k] - (s - bb)) + (t - bb)  # TwoSum, written out so that it vectorizes
        hi[k] = s
        mag[k] += abs(t)


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _mean_square(row, d, pivot, delta, row_term, gamma2, u, safety):
    """(s, bound on s) for LayerNorm: s = Σĉ²/d by Sum2 in lanes, with ĉ's own error propagated.
    (RMSNorm's ĉ = x, without error: the scan sums its squares, `_scan_row`.)"""
    n = row.shape[0]
    hi, lo, prop = np.zeros(LANES), np.zeros(LANES), np.zeros(LANES)
    full = n - n % LANES
    for j0 in range(0, full, LANES):
        _square_lanes(row, j0, LANES, pivot, delta, row_term, u, safety, hi, lo, prop)
    _square_lanes(row, full, n - full, pivot, delta, row_term, u, safety, hi, lo, prop)
    return _mean_square_of_lanes(hi, lo, prop.sum(), n, d, gamma2, u, safety)


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _mean_square_of_lanes(hi, lo, propagated, n, d, gamma2, u, safety):
    """(s, bound on s) from the TwoSum lanes of Σĉ² and the Σ of ĉ's propagated error."""
    ss = _combine_lanes(hi, lo)
    ss_err = u * ss + gamma2 * ss + u * ss + propagated * (1.0 + (n + 1) * u)
    s = ss / d
    return s, (ss_err / d + u * s) * safety


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _square_lanes(row, j0, count, pivot, delta, row_term, u, safety, hi, lo, prop):
    """Entries j0..j0 + count − 1 into lanes 0..count − 1 of Σĉ² and of ĉ's propagated error."""
    for k in range(count):
        c, c_err = _centred(np.float64(row[j0 + k]), pivot, delta, row_term, 1.0, u, safety)
        prop[k] += c_err * (2.0 * abs(c) + c_err)
        p = c * c
        s = hi[k] + p
        bb = s - hi[k]
        lo[k] += (hi[k] - (s - bb)) + (p - bb)
        hi[k] = s


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _normalizer(s, s_err, eps, inside, degenerate, u, safety):
    """(r = 1/N, relative bound on r, ρ, relative bound on ρ), as fastpath.finish_rms_family."""
    if inside:
        tt = s + eps
        N = math.sqrt(tt)
        N_rel = ((s_err + u * tt) / tt) / 2.0 + u if tt > 0 else math.inf
        rho, rho_rel = 1.0, 0.0
    else:
        sigma = math.sqrt(s)
        # s = 0 on a row that is not degenerate means the mean square underflowed: no bound
        sigma_rel = (s_err / s if s > 0 else (0.0 if s_err == 0 else math.inf)) / 2.0 + u
        N = sigma + eps
        N_rel = (sigma * sigma_rel + u * N) / N if N > 0 else math.inf
        rho = 0.0 if degenerate else N / sigma
        rho_rel = (N_rel + sigma_rel + u) * safety
    r = 1.0 / N if N > 0 else math.inf
    return r, (N_rel + u) * safety, rho, rho_rel


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _rows_kernel(x, start, stop, d, centred, eps, inside, factor, factor_err, f_hi, f_lo, bias, has_bias, unit_factor,
                 check_x, want_yn, midpoint_tier, precision, emin, min_normal, max_finite, has_inf, encoding,
                 out16, out32, status, flags, yn_out, yn_err_out, row_out):
    """Rows start..stop − 1, each on its own; see `forward_rows` for the outputs. A row is
    worked out in scratch rows (in cache), then written once in the format's encoding; its
    statuses are kept only when something is left for the slow path."""
    n = x.shape[1]
    rounded = np.empty(n, dtype=np.float32)
    row_status = np.empty(n, dtype=np.uint8)
    for i in range(start, stop):
        row = x[i]
        if centred:  # a literal for the scan's loop
            hi, lo, nonfinite, bad, degenerate = _scan_row(row, True, precision, emin, min_normal, max_finite, has_inf,
                                                           check_x)
        else:
            hi, lo, nonfinite, bad, degenerate = _scan_row(row, False, precision, emin, min_normal, max_finite, has_inf,
                                                           check_x)
        flags[i, 0] = bad
        if nonfinite or (degenerate and eps == 0.0):  # NaN rows: non-finite input, or 0/0
            flags[i, 1] = 1
            rounded[:] = math.nan
            _write_row(rounded, encoding, out16, out32, i)
            if want_yn:  # never used (the row is masked), but defined
                yn_out[i, :] = 0.0
                yn_err_out[i, :] = 0.0
        else:
            stats = _row_statistics(row, d, centred, eps, inside, hi, lo, degenerate)
            if want_yn:
                row_out[i, 0], row_out[i, 1], row_out[i, 2], row_out[i, 3] = stats[4], stats[5], stats[6], stats[7]
            unwritten, left = _row_elements(row, stats, factor, factor_err, bias, has_bias, unit_factor, want_yn,
                                            precision, emin, min_normal, max_finite, has_inf, rounded, row_status,
                                            yn_out[i if want_yn else 0], yn_err_out[i if want_yn else 0],
                                            out32[i if encoding == FLOAT32 else 0], encoding)
            if left and midpoint_tier and d <= MAX_WIDTH:
                by_midpoint = resolve_row(row, d, centred, eps, inside, f_hi, f_lo, bias, has_bias,
                                          (precision, emin, min_normal, max_finite, has_inf), rounded, row_status,
                                          1.0, 1.0)
                flags[i, 3] = by_midpoint
                left -= by_midpoint
            flags[i, 2] = left
            if left:
                status[i, :] = row_status
            if unwritten:  # the general loop, or decide_element or the midpoint tier changed the scratch
                _write_row(rounded, encoding, out16, out32, i)


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _unit_row(row, stats, fmt_params, centred, rounded, status, out_row32, encoding):
    """`_unit_elements` with `centred` (a literal); float32 results go straight into the output
    row as well (saves the copy, some 10 % at 512x4096), bf16 and fp16 are written from the
    scratch row afterwards (encoding them inside this loop measured no faster, and 3x slower
    for fp16). Whether it wrote the output row is `encoding == FLOAT32`."""
    if encoding == FLOAT32:
        return _unit_elements(row, stats, fmt_params, centred, rounded, status, out_row32, True)
    return _unit_elements(row, stats, fmt_params, centred, rounded, status, out_row32, False)


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _store(value, j, rounded, out_row32, write_out):
    """Element j's value into the scratch row, and with `write_out` into the float32 output row
    too. `write_out` is a literal: a branch on a run-time value inside the element loop, which
    the compiler does not hoist, made the loop many times slower."""
    f = np.float32(value)
    rounded[j] = f
    if write_out:
        out_row32[j] = f


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _write_row(rounded, encoding, out16, out32, i):
    bits = rounded.view(np.uint32)
    if encoding == BF16_BITS:
        for j in range(rounded.shape[0]):
            out16[i, j] = bf16_bits(bits[j])
    elif encoding == FP16_BITS:
        for j in range(rounded.shape[0]):
            out16[i, j] = fp16_bits(bits[j])
    else:
        for j in range(rounded.shape[0]):  # a plain loop: the slice assignment was slower
            out32[i, j] = rounded[j]


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _row_statistics(row, d, centred, eps, inside, hi, lo, degenerate):
    """(pivot, δ, row term of ĉ's bound, centring weight, r, r_rel, ρ, ρ_rel) of one row, from
    the lanes `_scan_row` summed."""
    n = row.shape[0]
    u, safety = U, SAFETY
    gamma = (n + LANES) * u / (1.0 - (n + LANES) * u)
    gamma2 = gamma * gamma
    pivot, delta, row_term = 0.0, 0.0, 0.0
    if centred:  # a constant row pivots on its own value: ĉ = 0 exactly
        pivot = np.float64(row[0]) if degenerate else hi.sum() / d
        if not degenerate:
            delta, row_term = _centring(row, d, pivot, gamma2, u, safety)
        s, s_err = _mean_square(row, d, pivot, delta, row_term, gamma2, u, safety)
    else:  # RMSNorm: the scan has summed the squares; ĉ = x has no error to propagate
        s, s_err = _mean_square_of_lanes(hi, lo, 0.0, n, d, gamma2, u, safety)
    r, r_rel, rho, rho_rel = _normalizer(s, s_err, eps, inside, degenerate, u, safety)
    return pivot, delta, row_term, 1.0 if centred else 0.0, r, r_rel, rho, rho_rel


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _row_elements(row, stats, factor, factor_err, bias, has_bias, unit_factor, want_yn, precision, emin, min_normal,
                  max_finite, has_inf, rounded, row_status, yn_row, yn_err_row, out_row32, encoding):
    """Tier 1 for one row's elements: the vectorized test, then decide_element where it could
    not decide; returns (whether the output row is yet to be written from the scratch row, how
    many are left undecided)."""
    u, safety = U, SAFETY
    pivot, delta, row_term, centring, r, r_rel = stats[0], stats[1], stats[2], stats[3], stats[4], stats[5]
    fmt_params = (precision, min_normal, max_finite, math.ldexp(1.0, emin - (precision - 1)))
    bias_weight = 1.0 if has_bias else 0.0
    row_stats = (pivot, delta, row_term, centring, r, r_rel)
    if want_yn:
        recheck = _elements(row, row_stats, fmt_params, factor, factor_err, bias, bias_weight, True, rounded,
                            row_status, yn_row, yn_err_row)
    elif unit_factor and centring != 0.0:
        recheck = _unit_row(row, row_stats, fmt_params, True, rounded, row_status, out_row32, encoding)
    elif unit_factor:
        recheck = _unit_row(row, row_stats, fmt_params, False, rounded, row_status, out_row32, encoding)
    else:
        recheck = _elements(row, row_stats, fmt_params, factor, factor_err, bias, bias_weight, False, rounded,
                            row_status, yn_row, yn_err_row)
    if recheck == 0:
        return want_yn or not unit_factor or encoding != FLOAT32, 0  # only _unit_row writes fp32 rows itself
    left, still = 0, recheck
    if recheck * _CLASSIFY_SHARE > row.shape[0]:
        affine = (factor, factor_err, bias, has_bias)
        left, still = _classify_rechecks(row, row_stats, affine, precision, emin, min_normal, max_finite, rounded,
                                         row_status)
    for j in range(row.shape[0] if still else 0):  # zeros, subnormal edges, overflow
        if row_status[j] == _RECHECK:
            c, c_err = _centred(np.float64(row[j]), pivot, delta, row_term, centring, u, safety)
            y, y_err, _, _ = forward_element(c, c_err, r, r_rel, factor[j], factor_err[j], bias[j], has_bias, u, safety)
            row_status[j], rounded[j] = decide_element(y, y_err, precision, emin, min_normal, max_finite, has_inf)
            left += row_status[j] != DECIDED
    return True, left


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _classify_rechecks(row, stats, affine, precision, emin, min_normal, max_finite, rounded, status):
    """decide_element for this row's _RECHECK elements wherever `classify_element` can stand
    in for it, in a loop without branches (rows of the tiny family recheck a tenth of their
    elements, mostly intervals across a rounding boundary); the others stay _RECHECK.
    Returns (of those classified, how many are not DECIDED; how many stay _RECHECK)."""
    u, safety = U, SAFETY
    pivot, delta, row_term, centring, r, r_rel = stats
    factor, factor_err, bias, has_bias = affine
    consts = (bits_of(min_normal) & _EXPONENT_FIELD, np.uint64(53 - precision) << np.uint64(52), max_finite, precision,
              emin)
    open_count, still = 0, 0
    for j in range(row.shape[0]):
        c, c_err = _centred(np.float64(row[j]), pivot, delta, row_term, centring, u, safety)
        y, y_err, _, _ = forward_element(c, c_err, r, r_rel, factor[j], factor_err[j], bias[j], has_bias, u, safety)
        clean, new_status, value = classify_element(y, y_err, consts)
        take = clean & (status[j] == _RECHECK)
        status[j] = new_status if take else status[j]
        rounded[j] = value if take else rounded[j]
        open_count += take & (new_status != DECIDED)
        still += status[j] == _RECHECK
    return open_count, still


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def round_by_adding(v, floor_field, shift_field):
    """RNE of v ≥ 0 to the format, the exponent unbounded above, as (v + C) − C with
    C = 2^(e − p + 53) and 2^e the binade of v (at least the format's smallest normal, below
    which the spacing stays the same): v + C lies in C's binade, whose spacing 2^(e − p + 1) is
    the format's at v, and an even last bit there is an even multiple of it, so the sum rounds
    v as the format does. (A negative v gives a value ≤ 0, not its rounding: v + C falls in the
    binade below C's.)"""
    field = bits_of(abs(v)) & _EXPONENT_FIELD
    c = float_of(max(field, floor_field) + shift_field)
    return (v + c) - c


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def classify_element(y, y_err, consts):
    """(clean, status, value): where `clean`, exactly decide_element's (status, value) for
    (y, y_err), without branches. Clean: y_err > 0 and the widened ends of |ŷ|'s interval round
    to positive values at most the largest finite. decide_element rounds the signed ends, and
    rounding to nearest is symmetric, so its ends are ±(these), in some order; neither is 0, NaN
    or beyond the largest finite, so it decides (equal ends), finds a straddle (the high end
    one spacing above the low end) or gives up (slot ±1), as here. Anything else is not clean
    (zeros, non-finite values, an exact y_err = 0, overflow) and goes to decide_element."""
    floor_field, shift_field, max_finite, precision, emin = consts
    a = abs(y)
    widened = y_err * _WIDEN_REL + a * _WIDEN_ABS
    low = round_by_adding(a - widened, floor_field, shift_field)
    high = round_by_adding(a + widened, floor_field, shift_field)
    clean = (y_err > 0.0) & (low > 0.0) & (high <= max_finite)
    straddles = high == low + quantum_at(low, precision, emin)
    status = DECIDED if low == high else (STRADDLES if straddles else UNDECIDED)
    value = math.copysign(1.0 if status == UNDECIDED else low, y)
    return clean, status, value


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def cell_constants(precision, min_normal, max_finite, quantum):
    """The constants of `cell_test` for one format (quantum: its smallest subnormal)."""
    dropped = np.uint64(52 - (precision - 1))
    half_minus_one = (np.uint64(1) << (dropped - np.uint64(1))) - np.uint64(1)
    keep = ~((np.uint64(1) << dropped) - np.uint64(1))
    return (dropped, half_minus_one, keep, np.uint64(precision) << np.uint64(52), min_normal, max_finite, quantum,
            1.0 / quantum)


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def cell_test(a, err, consts):
    """(q, inside) for a = |ŷ| ≥ 0 with bound err, branch-free (see `_elements`): q = round(a) in
    the format; inside when [a − err, a + err] provably rounds to q, q > 0, and a is below
    the largest finite value — or when ŷ is an exact zero (err = 0), whose sign the caller keeps."""
    dropped, half_minus_one, keep, precision_field, min_normal, max_finite, quantum, to_quanta = consts
    significand = np.uint64((1 << 52) - 1)
    widened = err * _WIDEN_REL + a * _WIDEN_ABS
    bits = bits_of(a)
    q_bits = (bits + half_minus_one + ((bits >> dropped) & np.uint64(1))) & keep
    q = float_of(q_bits)
    half = float_of((q_bits & ~significand) - precision_field)  # 2^(e − p): half of q's spacing
    half_below = half * 0.5 if (q_bits & significand) == 0 else half
    if a < min_normal:  # the format's subnormals: one fixed spacing (exact scaling by it)
        q = np.rint(a * to_quanta) * quantum
        half = quantum * 0.5
        half_below = half
    inside = (q > 0.0) & (a < max_finite) & (a - widened > q - half_below) & (a + widened < q + half)
    return q, inside | ((a == 0.0) & (err == 0.0))  # an exact zero (a constant LayerNorm row): itself


@numba.njit(cache=True, nogil=True, error_model="numpy")
def classify_batch(values, errors, precision, emin, min_normal, max_finite, clean_out, status_out, value_out):
    """`classify_element` over arrays (for the tests: against decide_element)."""
    consts = (bits_of(min_normal) & _EXPONENT_FIELD, np.uint64(53 - precision) << np.uint64(52), max_finite, precision,
              emin)
    for k in range(values.shape[0]):
        clean_out[k], status_out[k], value_out[k] = classify_element(values[k], errors[k], consts)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def cell_test_batch(values, errors, precision, min_normal, max_finite, quantum, q_out, inside_out):
    """`cell_test` over arrays (for the tests: the same compiled rule the row pass uses)."""
    consts = cell_constants(precision, min_normal, max_finite, quantum)
    for k in range(values.shape[0]):
        q_out[k], inside_out[k] = cell_test(abs(values[k]), errors[k], consts)


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _elements(row, stats, fmt_params, factor, factor_err, bias, bias_weight, store_yn, rounded, status, yn_out,
              yn_err_out):
    """ŷ, E and the rounding test for every element of one row, without branches so that the
    loop vectorizes (`store_yn` is a literal at both call sites).

    ŷ and E as decide.forward_element (the bias term weighted by 0 or 1). q = round(|y|): by
    the bit pattern in the format's normal range, by scaling to its fixed quantum below it
    (`cell_test`). Decided when q > 0, |y| < the largest finite, and [|y| − W, |y| + W] lies
    strictly inside q's rounding cell (q − h⁻, q + h): h = half of q's spacing, h⁻ = h/2 when q
    is a normal power of two (the spacing halves below it; at the smallest normal this is
    merely conservative), W the widening of decide.py. Every other element (zeros, overflow,
    cells the interval leaves) is marked _RECHECK and goes through decide_element, with
    exactly decide.py's rules (signed zeros included).
    """
    n = row.shape[0]
    u, safety = U, SAFETY
    pivot, delta, row_term, centring, r, r_rel = stats
    precision, min_normal, max_finite, quantum = fmt_params
    consts = cell_constants(precision, min_normal, max_finite, quantum)
    recheck = 0
    with_bias = bias_weight != 0.0
    for j in range(n):
        c, c_err = _centred(np.float64(row[j]), pivot, delta, row_term, centring, u, safety)
        yn, yn_err = normalized_element(c, c_err, r, r_rel, u, safety)
        scaled = yn * factor[j]
        y = scaled + bias[j] if with_bias else scaled  # (−0 + 0 would lose a zero's sign)
        y_err = (abs(factor[j]) * yn_err + abs(yn) * factor_err[j] + u * abs(scaled) + bias_weight * u * abs(y)) * safety
        if store_yn:
            yn_out[j] = yn
            yn_err_out[j] = yn_err
        q, inside = cell_test(abs(y), y_err, consts)
        rounded[j] = math.copysign(q, y)
        status[j] = DECIDED if inside else _RECHECK
        recheck += not inside
    return recheck


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _unit_elements(row, stats, fmt_params, centred, rounded, status, out_row32, write_out):
    """`_elements` where w̃ = 1 exactly with no error and there is no bias (affine none, or a
    weight of ones): the same ŷ and the same bound, bit for bit, with the terms that are
    exactly +0 left out — ŷ·1 = ŷ, |ŷ|·0 = +0, and for RMSNorm (`centred` a literal False)
    ĉ = x with ĉ's error 0, so c_err·r·(1 + r_rel) = +0 (r is finite on every row that gets
    here; where it is not, both versions leave the element to decide_element). Adding +0 to
    the other, nonnegative terms changes nothing. About a third fewer operations per element."""
    n = row.shape[0]
    u, safety = U, SAFETY
    pivot, delta, row_term, centring, r, r_rel = stats
    precision, min_normal, max_finite, quantum = fmt_params
    consts = cell_constants(precision, min_normal, max_finite, quantum)
    recheck = 0
    for j in range(n):
        if centred:
            c, c_err = _centred(np.float64(row[j]), pivot, delta, row_term, centring, u, safety)
            yn, yn_err = normalized_element(c, c_err, r, r_rel, u, safety)
        else:  # normalized_element with c_err = 0: its second term is +0
            yn = np.float64(row[j]) * r
            yn_err = (abs(yn) * (r_rel + u)) * safety
        y_err = (yn_err + u * abs(yn)) * safety
        q, inside = cell_test(abs(yn), y_err, consts)
        _store(math.copysign(q, yn), j, rounded, out_row32, write_out)
        status[j] = DECIDED if inside else _RECHECK
        recheck += not inside
    return recheck


def _is_unit_factor(factor: np.ndarray, factor_err: np.ndarray, has_bias: bool) -> bool:
    """w̃ = 1 exactly, with no error, and no bias: `_unit_elements` applies."""
    return not has_bias and bool((factor == 1.0).all() and (factor_err == 0.0).all())


def forward_rows(*, centred: bool, x: np.ndarray, d: int, eps: float, inside: bool, affine: str, w: np.ndarray,
                 factor: np.ndarray, factor_err: np.ndarray, bias: np.ndarray, has_bias: bool, fmt: FloatFormat,
                 check_x: bool, want_yn: bool = False, midpoint_tier: bool = True):
    """(rounded, status uint8, flags, ŷ, bound on ŷ, per-row (r, r_rel, ρ, ρ_rel)).

    x is float64, C-contiguous; w the weight (for the midpoint tier's exact w̃), factor and
    factor_err w̃ and its bound in float64 (fastpath.weight_factor). `rounded` is an array of
    fmt.dtype for bf16 and fp16, of float32 otherwise (every value of the other formats this
    path serves is a float32). `status` is only written on rows with something left (other
    rows read 0 = DECIDED). ŷ and the per-row statistics are only filled with `want_yn` (the
    backward pass needs them). Per row i: flags[i, 0] counts values not in `fmt` (with
    `check_x`), flags[i, 1] is 1 on NaN rows (a non-finite entry, or 0/0), flags[i, 2] counts
    elements left undecided, flags[i, 3] those the midpoint tier decided.
    """
    rows, n = x.shape
    vec = lambda v: np.ascontiguousarray(np.broadcast_to(v, (n,)), dtype=np.float64)  # noqa: E731
    encoding = encoding_of(fmt)
    out16 = np.empty((rows, n) if encoding != FLOAT32 else (1, 0), dtype=np.uint16)
    out32 = np.empty((rows, n) if encoding == FLOAT32 else (1, 0), dtype=np.float32)
    status = np.zeros((rows, n), dtype=np.uint8)  # calloc: pages no row writes are never touched
    flags = np.zeros((rows, 4), dtype=np.int64)
    shape = (rows, n) if want_yn else (1, 0)
    yn, yn_err = np.empty(shape), np.empty(shape)
    row_stats = np.zeros((rows, 4) if want_yn else (1, 4))
    f_hi, f_lo = weight_factor_words(affine, vec(w))
    factor, factor_err, bias = vec(factor), vec(factor_err), vec(bias)
    unit_factor = _is_unit_factor(factor, factor_err, has_bias)

    def block(start: int, stop: int) -> None:
        _rows_kernel(x, start, stop, d, centred, eps, inside, factor, factor_err, f_hi, f_lo, bias, has_bias, unit_factor,
                     check_x, want_yn, midpoint_tier, fmt.precision, fmt.emin, fmt.min_normal, fmt.max_finite,
                     fmt.has_inf, encoding, out16, out32, status, flags, yn, yn_err, row_stats)

    run_blocks(block, rows)
    rounded = out32 if encoding == FLOAT32 else out16.view(fmt.dtype)
    return rounded, status, flags, yn, yn_err, row_stats
