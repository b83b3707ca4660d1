"""The parallel float64 row pass (reference/rowpass.py, formatbits.py, encode.py) and the thread
setting: rounding on bit patterns against FloatFormat's exact RNE, the vectorized cell test
against exact rational endpoints (and a wrong variant of it caught), results independent of
the thread count."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from normtheory.errors import UsageError
from normtheory.families import FAMILIES, draw_rows
from normtheory.formats import FORMATS, round_fraction
from normtheory.reference import correctly_rounded, rowpass
from normtheory.reference.encode import to_format
from normtheory.reference.formatbits import round_to_format
from normtheory.reference.rowpass import DECIDED, STRADDLES, UNDECIDED, cell_test_batch, classify_batch, decide_element
from normtheory.reference.threads import ENV_VAR, max_threads, resolve_threads

ROW_PASS_FORMATS = ["fp32", "bf16", "fp16", "fp8_e4m3fn", "fp8_e5m2"]


def _edge_values(fmt) -> np.ndarray:
    """Format values, their midpoints, one binary64 ulp either side, powers of two, the
    subnormal/normal and overflow boundaries."""
    base = [fmt.min_subnormal, fmt.min_normal, fmt.max_finite, 1.0, 2.0, 0.75, 3.0]
    values = []
    for v in base:
        q = float(fmt.ulp(np.array([v]))[0])
        for w in (v, v + q / 2, v - q / 4, v + q, v - q / 2, 2 * v):
            values += [w, math.nextafter(w, math.inf), math.nextafter(w, -math.inf)]
    values = np.array(values)
    return np.concatenate([values, -values])


@pytest.mark.parametrize("name", ROW_PASS_FORMATS)
def test_round_to_format_is_formats_exact_rne(name):
    fmt = FORMATS[name]
    rng = np.random.default_rng(0)
    values = np.concatenate([_edge_values(fmt), rng.standard_normal(2000) * 2.0 ** rng.integers(-160, 140, 2000),
                             [0.0, -0.0]])
    values = values[np.isfinite(values)]  # (non-finite values pass through; the callers never round them)
    ours = np.array([round_to_format(float(v), fmt.precision, fmt.emin, fmt.min_normal, fmt.max_finite, fmt.has_inf)
                     for v in values])
    with np.errstate(over="ignore"):
        expected = fmt.round_to_float64(values)
    assert np.array_equal(ours, expected, equal_nan=True)
    assert np.array_equal(np.signbit(ours), np.signbit(expected))


def _python_cell_rule(values, errors, fmt, halve_below_powers=True):
    """The rule of rowpass.cell_test written again in Python, optionally with a deliberate bug
    (no halving of the cell below a power of two), to show the checker below can fail."""
    q = np.abs(fmt.round_to_float64(np.abs(values)))
    spacing = fmt.ulp(q)
    half = spacing / 2
    power = (np.frexp(q)[0] == 0.5) & (q >= fmt.min_normal) & halve_below_powers
    half_below = np.where(power, half / 2, half)
    a = np.abs(values)
    widened = errors * (1 + 2.0**-40) + a * 2.0**-51
    inside = (q > 0) & (a < fmt.max_finite) & (a - widened > q - half_below) & (a + widened < q + half)
    return q, inside


def _violations(values, errors, q, inside, fmt) -> int:
    """Elements the rule calls decided although an exact end of [a − E, a + E] rounds elsewhere."""
    bad = 0
    for a, e, qq, ok in zip(np.abs(values), errors, q, inside):
        if not ok:
            continue
        if a == 0 and e == 0:  # an exact zero stays itself
            bad += qq != 0
            continue
        for end in (Fraction(float(a)) - Fraction(float(e)), Fraction(float(a)) + Fraction(float(e))):
            if end <= 0 or round_fraction(end, fmt) != qq:
                bad += 1
                break
    return bad


def _cell_cases(fmt, rng):
    values = np.repeat(_edge_values(fmt), 8)
    values = values[np.abs(values) < fmt.max_finite * 2]
    ulps = np.abs(fmt.ulp(values))
    errors = ulps * rng.choice([1e-9, 0.1, 0.24, 0.26, 0.49, 0.5, 0.51, 1.0], size=values.size)
    zeros = np.zeros(4)  # exact zeros (decided as themselves) and zeros with a bound (never decided)
    return np.concatenate([values, zeros]), np.concatenate([errors, [0.0, 0.0, fmt.min_subnormal, 1e-300]])


@pytest.mark.parametrize("name", ROW_PASS_FORMATS)
def test_cell_test_never_decides_an_interval_that_rounds_two_ways(name):
    fmt = FORMATS[name]
    rng = np.random.default_rng(1)
    values, errors = _cell_cases(fmt, rng)
    q, inside = np.empty(values.size), np.empty(values.size, dtype=np.bool_)
    cell_test_batch(values, errors, fmt.precision, fmt.min_normal, fmt.max_finite, fmt.min_subnormal, q, inside)
    assert inside.sum() > values.size // 4  # it does decide most of them
    assert _violations(values, errors, q, inside, fmt) == 0
    assert _violations(values, errors, *_python_cell_rule(values, errors, fmt), fmt) == 0
    wrong_q, wrong_inside = _python_cell_rule(values, errors, fmt, halve_below_powers=False)
    assert _violations(values, errors, wrong_q, wrong_inside, fmt) > 0  # the check can fail


def _forward_unit_rows(op, x, fmt, eps, inside):
    n = x.shape[1]
    ones, zeros = np.ones(n), np.zeros(n)
    return rowpass.forward_rows(centred=op == "layernorm", x=x, d=n, eps=eps, inside=inside, affine="none", w=ones,
                                factor=ones, factor_err=zeros, bias=zeros, has_bias=False, fmt=fmt, check_x=True)


@pytest.mark.parametrize("op", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("name", ["bf16", "fp16", "fp32", "fp8_e4m3fn"])
def test_unit_factor_loop_matches_the_general_one(op, name, monkeypatch):
    """rowpass._unit_elements (w̃ = 1, no bias) against the general loop: the same rounded
    values, statuses and per-row counts, bit for bit, on every family and both eps modes."""
    fmt = FORMATS[name]
    rng = np.random.default_rng(3)
    x = np.concatenate([draw_rows(family, rng, 3, 96, fmt) for family in sorted(FAMILIES)])
    x[0, :5] = 0.0
    # rows of ±1 (mean 0, mean square 1) with |y| = 1/√(1 + eps) about 7 float64 ulps (of 1/2)
    # above the midpoint below 1: inside the bound (about 6 ulps, plus 4 of widening), outside
    # the widening alone, so the test sees the bound itself
    midpoint = 1.0 - 2.0 ** -(fmt.precision + 1)
    signs = np.where(np.arange(96) % 2 == 0, 1.0, -1.0)
    straddling = np.stack([signs, -signs])
    near_midpoint_eps = 1.0 / (midpoint + 7 * 2.0**-53) ** 2 - 1.0
    cases = [(x, 1e-5, True), (x, 1e-3, False), (x, 0.0, True), (straddling, near_midpoint_eps, True)]
    for rows, eps, inside in cases:
        fast = _forward_unit_rows(op, rows, fmt, eps, inside)
        with monkeypatch.context() as patch:
            patch.setattr(rowpass, "_is_unit_factor", lambda *args: False)
            general = _forward_unit_rows(op, rows, fmt, eps, inside)
        for ours, theirs in zip(fast[:3], general[:3]):
            assert np.array_equal(ours.view(np.uint8), theirs.view(np.uint8))
    flags = general[2]
    assert flags[:, 3].sum() + flags[:, 2].sum() == straddling.size  # none decided by the float64 test


@pytest.mark.parametrize("name", ROW_PASS_FORMATS)
def test_classify_element_agrees_with_decide_element_where_clean(name):
    """rowpass.classify_element (the branch-free recheck) against decide_element, element by
    element, on interval ends around every kind of boundary, both signs, zeros, subnormals,
    overflow and non-finite values: where it claims to stand in, the same status and value."""
    fmt = FORMATS[name]
    values, errors = _cell_cases(fmt, np.random.default_rng(5))
    errors = np.concatenate([errors, errors * 3, np.zeros(4), [np.inf, np.nan, 1e300, fmt.max_finite]])
    values = np.concatenate([values, values, [1.0, -3.0, 0.0, fmt.min_subnormal], [1.0, 1.0, 1.0, 1.0]])
    values = np.concatenate([values, -values, [np.inf, -np.inf, np.nan, fmt.max_finite * 4]])
    errors = np.concatenate([errors, errors, [1e-3, 0.0, 1e-3, 1e-3]])
    clean = np.empty(values.size, dtype=np.bool_)
    status, value = np.empty(values.size, dtype=np.uint8), np.empty(values.size)
    classify_batch(values, errors, fmt.precision, fmt.emin, fmt.min_normal, fmt.max_finite, clean, status, value)
    expected = [decide_element(float(v), float(e), fmt.precision, fmt.emin, fmt.min_normal, fmt.max_finite,
                               fmt.has_inf) for v, e in zip(values, errors)]
    expected_status = np.array([s for s, _ in expected])
    expected_value = np.array([v for _, v in expected])
    assert clean.sum() > values.size // 2
    assert {DECIDED, STRADDLES, UNDECIDED} <= set(expected_status[clean].tolist())  # every outcome is covered
    assert np.array_equal(status[clean], expected_status[clean])
    assert np.array_equal(value[clean].view(np.uint64), expected_value[clean].view(np.uint64))


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_encoding_writes_every_value_exactly(name):
    fmt = FORMATS[name]
    with np.errstate(invalid="ignore"):
        values = fmt.all_values().astype(np.float64)
        got = to_format(values.astype(np.float32), fmt)
    nan = np.isnan(values)
    assert np.array_equal(got.view(np.uint16)[~nan], fmt.from_exact_float64(values).view(np.uint16)[~nan])
    assert np.isnan(fmt.to_float64(got)[nan]).all()


def _bits(out, fmt):
    return {k: fmt.to_bits(v) for k, v in out.items()}


@given(st.integers(0, 2**32 - 1), st.sampled_from(sorted(FAMILIES)), st.sampled_from(["layernorm", "rmsnorm"]),
       st.sampled_from(["bf16", "fp16", "fp32"]), st.booleans())
def test_results_do_not_depend_on_the_thread_count(seed, family, op, name, backward):
    fmt = FORMATS[name]
    rng = np.random.default_rng(seed)
    x = draw_rows(family, rng, 9, 40, fmt)
    if seed % 3 == 0:
        x[seed % 9, seed % 40] = np.nan  # a NaN row among them
    w = fmt.round_to_float64(rng.standard_normal(40))
    b = fmt.round_to_float64(rng.standard_normal(40))
    gy = fmt.round_to_float64(rng.standard_normal(x.shape)) if backward else None
    outs = [correctly_rounded(op, x, w, b, format=name, eps=1e-5, affine="weight_bias", gy=gy, threads=t)
            for t in (1, 2)]
    one, two = (_bits(o, fmt) for o in outs)
    assert one.keys() == two.keys()
    for key in one:
        assert np.array_equal(one[key], two[key]), key


def test_thread_count_is_validated_and_read_from_the_environment(monkeypatch):
    assert resolve_threads(1) == 1
    assert resolve_threads(10**6) == max_threads()  # capped at what numba started
    for bad in (0, -2, "two"):
        with pytest.raises(UsageError, match="thread count"):
            resolve_threads(bad)
    monkeypatch.setenv(ENV_VAR, "1")
    assert resolve_threads() == 1
    monkeypatch.setenv(ENV_VAR, "zero")
    with pytest.raises(UsageError, match=ENV_VAR):
        correctly_rounded("rmsnorm", np.ones((1, 4)), format="bf16")
    monkeypatch.delenv(ENV_VAR)
    assert resolve_threads() == max_threads()


def test_unrepresentable_inputs_are_found_by_the_row_pass():
    x = np.ones((70, 8))
    x[66, 5] = 0.1
    with pytest.raises(UsageError, match=r"1 value\(s\) not representable in bf16, e.g. 0.1 at flat index 533"):
        correctly_rounded("layernorm", x, format="bf16")
    x[66, 5] = 2.0**-140  # below bf16's smallest subnormal
    with pytest.raises(UsageError, match="not representable in bf16"):
        correctly_rounded("rmsnorm", x, format="bf16")
    x[66, 5] = 70000.0  # beyond fp16's range
    with pytest.raises(UsageError, match="not representable in fp16"):
        correctly_rounded("rmsnorm", x, format="fp16")


@pytest.mark.parametrize("name", ROW_PASS_FORMATS)
def test_row_pass_counts_unrepresentable_and_non_finite_values_as_the_format_does(name):
    """The row scan's lean pass (plain = finite and rounds to itself) and its exact recount,
    against FloatFormat.is_representable, on rows mixing format values (subnormals, ±0, the
    largest finite) with values off the format, beyond its range, NaN and ±inf."""
    fmt = FORMATS[name]
    rng = np.random.default_rng(6)
    x = draw_rows("normal", rng, 12, 64, fmt)
    x[0, :6] = [fmt.min_subnormal, -fmt.min_subnormal * 3, -0.0, fmt.max_finite, -fmt.min_normal, 0.0]
    x[1, 3] = 1.0 + 2.0 ** -(fmt.precision + 2)  # between two format values
    x[2, 5] = fmt.max_finite * 2  # beyond the range
    x[3, 7] = fmt.min_subnormal / 2  # below the smallest subnormal
    x[4, 0], x[5, 1], x[6, 2] = np.nan, np.inf, -np.inf
    x[7, :] = fmt.min_subnormal * np.arange(64)  # all subnormals (and a zero)
    n = x.shape[1]
    ones, zeros = np.ones(n), np.zeros(n)
    flags = rowpass.forward_rows(centred=False, x=x, d=n, eps=1e-5, inside=True, affine="none", w=ones,
                                 factor=ones, factor_err=zeros, bias=zeros, has_bias=False, fmt=fmt, check_x=True)[2]
    assert np.array_equal(flags[:, 0], (~fmt.is_representable(x)).sum(axis=1))
    assert np.array_equal(flags[:, 1].astype(bool), ~np.isfinite(x).all(axis=1))


def test_weight_gradient_column_sums_are_correct():
    """gw over 200 rows (compensated column sums over fixed blocks, lnrms._column_total): every
    column equals the 256-bit evaluation rounded to fp32, none needed arb."""
    from mp_oracle import round_oracle

    from normtheory.reference import evaluate

    fmt = FORMATS["fp32"]
    rng = np.random.default_rng(4)
    x = draw_rows("normal", rng, 200, 12, fmt)
    gy = fmt.round_to_float64(rng.standard_normal(x.shape))
    w = fmt.round_to_float64(rng.standard_normal(12))
    out, stats = correctly_rounded("layernorm", x, w, format="fp32", gy=gy, affine="weight", return_stats=True)
    assert stats["gw"] == 0
    expected, ambiguous = round_oracle(evaluate("layernorm", x, w, gy=gy, affine="weight")["gw"], fmt)
    assert not ambiguous.any()
    assert np.array_equal(fmt.to_float64(out["gw"]), expected)
