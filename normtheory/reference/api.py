"""`correctly_rounded` and `evaluate`: the reference everything in normtheory is judged against.

"Exact" is the real-number result of the formula (registry.py, formulas.py) applied to the
given representable inputs and to eps as its exact binary64 value; "correctly rounded" is
that value rounded once, to nearest-even, to the target format (overflow as the format's
`round` does it: inf, or NaN for e4m3fn).

Conventions a user must know:
- A row whose statistic is exactly 0 with eps = 0 (zero row; constant row for LayerNorm) is
  0/0: every output of that row is NaN, and so is every gw/gb column sum it enters.
- Non-finite inputs give NaN in every output they reach (a row of x or gy, a column of w/b).
- Missing weight/bias default to the identity (w = 1, or 0 for offset_weight; b = 0).
- Zeros carry the sign IEEE arithmetic gives the formula (see ziv.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from normtheory.errors import UsageError
from normtheory.formats import FORMATS, FloatFormat, get_format
from normtheory.reference import encode, fastpath, lnrms, statistic_rules, tensors
from normtheory.reference.decide import decide_interval, forward_and_decide
from normtheory.reference.formulas import RowMath, row_is_nan
from normtheory.reference.fused import fused_forward
from normtheory.reference.masks import CHUNK_ROWS, nan_mask
from normtheory.reference.rings import ArbRing
from normtheory.reference.threads import thread_count
from normtheory.reference.ziv import SlowEvaluator
from normtheory.registry import NormParams, NormSpec, resolve_params

_ML_DTYPES = tuple(fmt.dtype for fmt in FORMATS.values())


def _numeric_float64(values, name: str, fmt: FloatFormat) -> np.ndarray:
    """Values as float64 (not yet checked against the format)."""
    arr = np.asarray(values)
    numeric = arr.dtype.kind in "fiu" or arr.dtype == fmt.dtype or arr.dtype in _ML_DTYPES
    if not numeric:
        raise UsageError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    with np.errstate(invalid="ignore"):  # widening an ml_dtypes NaN warns
        return arr.astype(np.float64, copy=False)


def _as_float64(values, name: str, fmt: FloatFormat) -> np.ndarray:
    """Values as float64, each required to be exactly representable in `fmt`."""
    arr = _numeric_float64(values, name, fmt)
    representable = _by_row_blocks(fmt.is_representable, arr, bool)
    if not representable.all():
        bad = np.flatnonzero(~representable.ravel())
        raise UsageError(
            f"{name} has {bad.size} value(s) not representable in {fmt.name}, "
            f"e.g. {float(arr.ravel()[bad[0]])!r} at flat index {int(bad[0])}"
        )
    return arr


def _by_row_blocks(fn, values: np.ndarray, dtype) -> np.ndarray:
    """fn applied to blocks of rows: the same result, with temporaries that stay in cache."""
    if values.ndim < 2 or values.shape[0] <= CHUNK_ROWS:
        return fn(values)
    out = np.empty(values.shape, dtype=dtype)
    for start in range(0, values.shape[0], CHUNK_ROWS):
        out[start:start + CHUNK_ROWS] = fn(values[start:start + CHUNK_ROWS])
    return out


def resolve_settings(op, format, w_format=None, *, eps=None, eps_mode="inside", affine=None, p=None):
    """(params, format, weight format) of a call, validated before any array is read (the CLI
    calls it first, so a wrong --op is reported before a missing --x); UsageError on anything
    invalid."""
    params = resolve_params(op, eps=eps, eps_mode=eps_mode, affine=affine, p=p)
    fmt = format if isinstance(format, FloatFormat) else get_format(format)
    w_fmt = fmt if w_format is None else (w_format if isinstance(w_format, FloatFormat) else get_format(w_format))
    if not fmt.has_nan:
        # fp6/fp4 have no NaN: an overflowing or 0/0 output would have no value to be rounded to
        raise UsageError(f"{fmt.name} has no NaN or inf, so the reference cannot write every output in it; "
                         "MX element formats are for scaled quantization (normtheory.precision.lowprecision.scaling)")
    return params, fmt, w_fmt


def _prepare(op, x, w, b, gy, format, w_format, eps, eps_mode, affine, p, check_x=True):
    params, fmt, w_fmt = resolve_settings(op, format, w_format, eps=eps, eps_mode=eps_mode, affine=affine, p=p)
    x = _as_float64(x, "x", fmt) if check_x else _numeric_float64(x, "x", fmt)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise UsageError(f"x must have shape (rows, n) or (n,) with n >= 1, got {x.shape}")
    single_row = x.ndim == 1
    x2 = x.reshape(1, -1) if single_row else x
    n = x2.shape[1]
    d = params.spec.model_width(n)
    uses_weight = params.affine in ("weight", "weight_bias", "offset_weight")
    w_default = 0.0 if params.affine == "offset_weight" else 1.0
    w = np.full(n, w_default) if w is None else _as_float64(w, "w", w_fmt)
    b = np.zeros(n) if b is None else _as_float64(b, "b", w_fmt)
    for name, vec in (("w", w), ("b", b)):
        if vec.shape != (n,):
            raise UsageError(f"{name} must have shape ({n},) to match x, got {vec.shape}")
    if gy is not None:
        gy = _as_float64(gy, "gy", fmt)
        if gy.shape != x.shape:
            raise UsageError(f"gy must have the shape of x {x.shape}, got {gy.shape}")
        gy = gy.reshape(x2.shape)
    return params, fmt, x2, w, b, gy, d, single_row, uses_weight


def correctly_rounded(op, x, w=None, b=None, *, format, eps=None, eps_mode="inside", affine=None, p=None,
                      gy=None, w_format=None, force_slow=False, return_stats=False, threads=None):
    """The exact result rounded once to `format`: dict with "y" (and "gx", "gw", "gb" given gy).

    x, w, b, gy: numpy arrays (any numeric or ml_dtypes dtype), or torch tensors of any
    supported dtype and device (read through their own methods: this module never imports
    torch; see tensors.py, which also runs CUDA tensors' float64 pass on their GPU once
    normtheory.kernels.cuda_reference is imported). `threads`: CPU threads (default: the
    NORMTHEORY_THREADS environment variable, else every core); the result never depends on it.
    `force_slow=True` sends every element through arb/exact evaluation (for testing the fast
    tiers). With `return_stats=True` a second dict reports how many elements each tier decided.
    """
    device_run = tensors.device_evaluation(op, x, w, b, gy)
    x, w, b, gy = (tensors.to_host(v) for v in (x, w, b, gy))
    with thread_count(threads):
        if device_run is not None and not force_slow:
            result, stats = device_run(op, x, w, b, format=format, eps=eps, eps_mode=eps_mode, affine=affine, p=p,
                                       w_format=w_format)
        else:
            result, stats = _correctly_rounded(op, x, w, b, gy, format=format, eps=eps, eps_mode=eps_mode,
                                               affine=affine, p=p, w_format=w_format, force_slow=force_slow)
    return (result, stats) if return_stats else result


# the statistics the compiled row passes (lnrms.py, fused.py) evaluate, with eps added under the
# root; every other op takes the vectorized path (statistic_rules.row_stats)
ROW_PASS_STATISTICS = ("variance", "mean_square")


def _has_row_pass(spec: NormSpec) -> bool:
    return spec.statistic in ROW_PASS_STATISTICS and spec.eps_floor == "add"


def _uses_row_pass(spec: NormSpec, fmt: FloatFormat) -> bool:
    return _has_row_pass(spec) and fmt.precision <= 24


def _correctly_rounded(op, x, w, b, gy, *, format, eps, eps_mode, affine, p, w_format, force_slow):
    fmt = format if isinstance(format, FloatFormat) else get_format(format)
    fast_rows = _uses_row_pass(resolve_params(op, eps=eps, eps_mode=eps_mode, affine=affine, p=p).spec, fmt)
    params, fmt, x, w, b, gy, d, single_row, uses_weight = _prepare(
        op, x, w, b, gy, format, w_format, eps, eps_mode, affine, p, check_x=not fast_rows)
    if fast_rows:
        outcome = lnrms.compute(params, fmt, x, w, b, gy, d, all_slow=force_slow, check_x=True)
        if outcome.invalid is not None and outcome.invalid.any():
            _as_float64(x, "x", fmt)  # raises the UsageError naming the first bad value
        outputs = {kind: (values, outcome.escalated.get(kind, 0)) for kind, values in outcome.values.items()}
        midpoint_tier = outcome.midpoint_tier
    else:
        outputs = _compute(params, fmt, x, w, b, gy, d, force_slow or fmt.precision > 24)
        midpoint_tier = 0
    result = {}
    for kind, (values, _escalated) in outputs.items():
        if kind == "gw" and not uses_weight:
            continue
        if kind == "gb" and params.affine != "weight_bias":
            continue
        if kind in ("gw", "gb") or single_row:
            values = values[0]
        result[kind] = _to_format(values, fmt)
    stats = {kind: int(esc) for kind, (_, esc) in outputs.items()}
    stats["elements"] = int(sum(v.size for v, _ in outputs.values()))
    stats["y_midpoint_tier"] = midpoint_tier
    return result, stats


def _to_format(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Rounded values (float32 or float64, already in the format) as an array of fmt.dtype."""
    if values.dtype == fmt.dtype:  # the row pass writes bf16, fp16 and fp32 results directly
        return values
    if values.dtype == np.float32:
        return encode.to_format(values, fmt)
    return _by_row_blocks(fmt.from_exact_float64, values, fmt.dtype)


@dataclass
class _Pending:
    """The float64 pass's results: rounded values per kind, and the elements it left undecided."""

    fmt: FloatFormat
    all_slow: bool
    rounded: dict[str, np.ndarray]
    undecided: dict[str, list] = field(default_factory=dict)  # kind -> [(rows, cols, float64 estimates)]

    def judge(self, kind, value, bound, row_offset, decided=None):
        if decided is None:
            decided, self.rounded[kind][row_offset:row_offset + value.shape[0]] = decide_interval(value, bound, self.fmt)
        if self.all_slow:
            decided = np.zeros(value.shape, dtype=bool)
        if not decided.all():
            i, j = np.nonzero(~decided)
            self.undecided.setdefault(kind, []).append((i + row_offset, j, value[i, j]))


def _non_finite_masks(params: NormParams, x, w, b, gy):
    """(nan_rows, nan_rows_gx, bad_columns) and the inputs with those rows/columns made harmless:
    NaN rows and columns are set at the end; computing them on zeros keeps the math finite."""
    rows = x.shape[0]
    nan_rows = np.concatenate([~np.isfinite(x[i:i + CHUNK_ROWS]).all(axis=1) for i in range(0, rows, CHUNK_ROWS)])
    if params.eps == 0:
        nan_rows |= np.array([row_is_nan(params, row) for row in x])
    nan_rows_gx = nan_rows | (~np.isfinite(gy).all(axis=1) if gy is not None else False)
    bad_columns = ~(np.isfinite(w) & np.isfinite(b))
    if nan_rows.any():
        x = np.where(nan_rows[:, None], 0.0, x)
    if bad_columns.any():
        w, b = np.where(bad_columns, 1.0, w), np.where(bad_columns, 0.0, b)
    if gy is not None and nan_rows_gx.any():
        gy = np.where(nan_rows_gx[:, None], 0.0, gy)
    return (nan_rows, nan_rows_gx, bad_columns), (x, w, b, gy)


def _forward_block(params: NormParams, fmt, x_block, b, d, factor, factor_err, out, want_yn: bool):
    """(decided, ŷ·w, ŷ, its bound, row statistics) of one block of rows, rounded into `out`."""
    has_bias = params.affine == "weight_bias"
    if _has_row_pass(params.spec):  # the common case: one compiled pass per row
        decided, y, yn, yn_err, r, r_rel, rho, rho_rel = fused_forward(
            params.spec.centred, x_block, d, params.eps, params.eps_mode == "inside", factor, factor_err, b, has_bias,
            fmt, fastpath.U, fastpath.SAFETY, out, want_yn)
        stats = fastpath.RowStats(None, None, r[:, None], r_rel[:, None], rho[:, None], rho_rel[:, None], None)
        return decided, y, yn, yn_err, stats
    stats = statistic_rules.row_stats(params, x_block, d)
    decided, out[...], y, yn, yn_err = forward_and_decide(stats, factor, factor_err, b, has_bias, fmt,
                                                         fastpath.U, fastpath.SAFETY)
    return decided, y, yn, yn_err, stats


def _float64_pass(params: NormParams, fmt, x, w, b, gy, d, all_slow: bool) -> _Pending:
    """Every element in float64 with a rigorous bound; what the bound decides is rounded."""
    rows, n = x.shape
    kinds = ["y"] + (["gx", "gw", "gb"] if gy is not None else [])
    pending = _Pending(fmt, all_slow, {k: np.empty((rows, n)) for k in kinds if k in ("y", "gx")})
    gw_sum, gw_err = np.zeros(n), np.zeros(n)
    factor, factor_err = fastpath.weight_factor(params, w)
    for start in range(0, rows, CHUNK_ROWS):
        block = slice(start, min(start + CHUNK_ROWS, rows))
        decided, y, yn, yn_err, stats = _forward_block(params, fmt, x[block], b, d, factor, factor_err,
                                                       pending.rounded["y"][block], gy is not None)
        pending.judge("y", y, None, start, decided)
        if gy is not None:
            gx, gx_bound = fastpath.backward_gx(params, stats, yn, yn_err, w, gy[block], d)
            pending.judge("gx", gx, gx_bound, start)
            term, term_err = fastpath.gw_terms(yn, yn_err, gy[block])
            gw_sum += term.sum(axis=0)
            gw_err += term_err.sum(axis=0) + (rows + 1) * fastpath.U * np.abs(term).sum(axis=0)
    if gy is not None:
        gb_hi, gb_lo, gb_bound = fastpath.tree_sum(gy, axis=0)
        # fl(hi + lo) errs by at most u·|result|, and by at most |lo| (hi itself is a float)
        rounding = np.minimum(fastpath.U * np.abs(gb_hi + gb_lo), np.abs(gb_lo))
        for kind, value, bound in (("gw", gw_sum, gw_err), ("gb", gb_hi + gb_lo, gb_bound + rounding)):
            pending.rounded[kind] = np.empty((1, n))
            pending.judge(kind, value[None, :], (bound * fastpath.SAFETY)[None, :], 0)
    return pending


def _compute(params: NormParams, fmt, x, w, b, gy, d, all_slow: bool):
    """{kind: (rounded float64 values, number of escalated elements)}."""
    (nan_rows, nan_rows_gx, bad_columns), (x, w, b, gy) = _non_finite_masks(params, x, w, b, gy)
    # 0/0 rows (overwritten with NaN below) and float64 overflow (an infinite bound, so the
    # element goes to the slow path) are expected here: numpy's warnings would only be noise
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        pending = _float64_pass(params, fmt, x, w, b, gy, d, all_slow)
    slow = SlowEvaluator(params, x, w, b, gy, d, fmt)
    outputs = {}
    for kind, values in pending.rounded.items():
        mask = nan_mask(kind, nan_rows, nan_rows_gx, bad_columns, values.shape)
        outputs[kind] = (values, slow.decide_pending(kind, values, pending.undecided.get(kind, []), mask))
    return outputs


def evaluate(op, x, w=None, b=None, *, eps=None, eps_mode="inside", affine=None, p=None, gy=None, prec=256):
    """The exact formulas at `prec` bits (arb, 32 guard bits), as numpy object arrays of mpmath.mpf.

    No rounding to a format; inputs are taken as exact binary64 values. Keys as in
    `correctly_rounded`. NaN rows (0/0) give mpf('nan').
    """
    import mpmath

    params, _, x2, w, b, gy, d, single_row, uses_weight = _prepare(
        op, x, w, b, gy, get_format("fp64"), None, eps, eps_mode, affine, p)
    rows, n = x2.shape

    def to_mpf(ball):
        if not ball.is_finite():
            return mpmath.mpf("nan")
        man, exp = ball.mid().man_exp()
        return mpmath.mpf((int(man), int(exp)))

    out = {"y": np.empty((rows, n), dtype=object)}
    if gy is not None:
        out["gx"] = np.empty((rows, n), dtype=object)
    with ArbRing(prec + 32) as ring:
        row_maths = []
        for i in range(rows):
            if row_is_nan(params, x2[i]) or not np.isfinite(x2[i]).all():
                row_maths.append(None)
                out["y"][i] = mpmath.mpf("nan")
                if gy is not None:
                    out["gx"][i] = mpmath.mpf("nan")
                continue
            math_row = RowMath(ring, params, x2[i], w, b, None if gy is None else gy[i], d)
            row_maths.append(math_row)
            for j in range(n):
                out["y"][i, j] = to_mpf(math_row.y(j))
                if gy is not None:
                    out["gx"][i, j] = to_mpf(math_row.gx(j))
        if gy is not None:
            if uses_weight:
                out["gw"] = np.empty(n, dtype=object)
                for j in range(n):
                    if any(m is None for m in row_maths):
                        out["gw"][j] = mpmath.mpf("nan")
                        continue
                    total = ring.zero
                    for m in row_maths:
                        total = total + m.gw_term(j)
                    out["gw"][j] = to_mpf(total)
            if params.affine == "weight_bias":
                out["gb"] = np.array([_exact_sum_mpf(gy[:, j]) for j in range(n)], dtype=object)
    if single_row:
        out["y"] = out["y"][0]
        if "gx" in out:
            out["gx"] = out["gx"][0]
    return out


def _exact_sum_mpf(values):
    """Σ of binary64 values, exactly (a dyadic rational), as an mpmath.mpf."""
    from fractions import Fraction

    import mpmath

    total = sum((Fraction(float(v)) for v in values), Fraction(0))
    if not np.isfinite(values).all():
        return mpmath.mpf("nan")
    exponent = total.denominator.bit_length() - 1  # the denominator is a power of two
    return mpmath.mpf((total.numerator, -exponent))
