"""Accumulation analysis (precision/lowprecision/accumulation.py) on emulated recordings of known accumulator
precision: it recovers the precision, tells truncation from rounding, says when a precision is
beyond what the inputs can show, and reads/writes recordings safely.

The emulated accumulators here are written independently of the estimator's own emulation:
rounding through a `FloatFormat` of the given precision (RNE) or frexp/floor/ldexp (truncation),
instead of the estimator's bit masks. No GPU recording exists yet (see benchmarks/
accumulation_probe.py); these tests check the analysis code only.
"""

from __future__ import annotations

import numpy as np
import pytest

from normtheory.errors import UsageError
from normtheory.formats import FORMATS, FloatFormat
from normtheory.precision.lowprecision.accumulation import (
    analyse,
    estimate_bits,
    load_recording,
    probe_inputs,
    save_recording,
)

FP32 = FORMATS["fp32"]


def sequential_accumulator(a, b, precision, mode):
    """Reference accumulator: one addition at a time in K order, then rounded to fp32."""
    acc_format = FloatFormat(f"acc{precision}", precision, -126, 127, True, np.dtype(np.float64))
    acc = np.zeros((a.shape[0], b.shape[1]))
    for k in range(a.shape[1]):
        total = acc + np.outer(a[:, k], b[k])
        if mode == "nearest":
            acc = acc_format.round_to_float64(total)
        else:
            mantissa, exponent = np.frexp(total)
            acc = np.ldexp(np.floor(np.ldexp(mantissa, precision)), exponent - precision)
    return FP32.round_to_float64(acc)


@pytest.mark.parametrize("in_format", ["fp8_e4m3fn", "bf16"])
@pytest.mark.parametrize("k", [512, 2048])
@pytest.mark.parametrize("precision,mode", [(14, "truncate"), (24, "nearest"), (24, "truncate"), (19, "nearest")])
def test_recovers_known_accumulators(in_format, k, precision, mode):
    a, b = probe_inputs(k, in_format, np.random.default_rng(k), m=8, n=8)
    estimate = estimate_bits(a, b, sequential_accumulator(a, b, precision, mode))
    assert estimate.model == mode
    assert not estimate.at_least and not estimate.at_most
    assert abs(estimate.bits - precision) <= 0.5


def test_neighbouring_precisions_are_told_apart():
    """The same estimator, given 13- and 15-bit data, does not answer 14 (it can fail)."""
    a, b = probe_inputs(1024, "fp8_e4m3fn", np.random.default_rng(1), m=8, n=8)
    for precision in (13, 15):
        estimate = estimate_bits(a, b, sequential_accumulator(a, b, precision, "truncate"))
        assert abs(estimate.bits - 14) > 0.5 and abs(estimate.bits - precision) <= 0.5


def test_a_precision_the_inputs_cannot_show_is_a_lower_bound():
    """fp8 products at K = 128 sum exactly in about 23 bits: a 24-bit accumulator is exact
    there, so only 'at least' can be said — and it is."""
    a, b = probe_inputs(128, "fp8_e4m3fn", np.random.default_rng(2), m=8, n=8)
    estimate = estimate_bits(a, b, sequential_accumulator(a, b, 30, "nearest"))
    assert estimate.at_least and estimate.bits <= 30


def test_recording_round_trip_and_bad_files(tmp_path):
    rng = np.random.default_rng(3)
    cases = {}
    for k in (256, 1024):
        a, b = probe_inputs(k, "fp8_e4m3fn", rng, m=4, n=4)
        cases[f"emulated14/K{k}"] = {"a": a, "b": b, "c": sequential_accumulator(a, b, 14, "truncate"),
                                     "label": "emulated14", "k": k, "in_format": "fp8_e4m3fn", "out_format": "fp32"}
    path = tmp_path / "rec.npz"
    save_recording(str(path), cases, {"device": "emulated"})
    loaded, environment = load_recording(str(path))
    assert environment == {"device": "emulated"} and set(loaded) == set(cases)
    assert [round(e.bits) for e in analyse(str(path))] == [14, 14]
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="not an accumulation recording"):
        load_recording(str(tmp_path / "bad.npz"))
    with pytest.raises(UsageError, match="no such recording"):
        load_recording(str(tmp_path / "missing.npz"))
