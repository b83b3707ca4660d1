"""Rounded arithmetic of the emulator: each operation is one correct rounding."""

from fractions import Fraction

import numpy as np
import pytest

from normtheory.formats import FORMATS, round_fraction
from normtheory.precision.emulation.arith import Arith
from normtheory.precision.emulation.forward import truncate


def _tricky_values(fmt, rng, count=20000):
    """Midpoints of the format (ties), values just beside them, subnormals, overflow."""
    base = fmt.round_to_float64(rng.standard_normal(count) * 2.0 ** rng.integers(-20, 14, count))
    mid = base + fmt.ulp(base) / 2
    tiny = rng.standard_normal(count) * fmt.min_normal
    big = np.array([fmt.max_finite * (1 + fmt.unit_roundoff * 0.99), fmt.max_finite * (1 + fmt.unit_roundoff)])
    return np.concatenate([mid, mid * (1 + 2.0**-45), mid * (1 - 2.0**-45), tiny, big, -big])


@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16"])
def test_round_is_the_formats_exact_rounding(name):
    fmt = FORMATS[name]
    values = _tricky_values(fmt, np.random.default_rng(1))
    np.testing.assert_array_equal(Arith(name).round(values), fmt.round_to_float64(values))


@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16"])
def test_fma_rounds_once(name):
    """a*b + c against the exact rational result rounded once (Fraction)."""
    fmt, ar = FORMATS[name], Arith(name)
    rng = np.random.default_rng(2)
    a = fmt.round_to_float64(rng.standard_normal(3000))
    b = fmt.round_to_float64(rng.standard_normal(3000))
    # c close to -a*b makes the sum cancel and land near ties of the target format
    c = fmt.round_to_float64(-a * b * (1 + rng.standard_normal(3000) * fmt.unit_roundoff * 4))
    got = ar.fma(a, b, c)
    want = [round_fraction(abs(Fraction(x) * Fraction(y) + Fraction(z)), fmt, Fraction(x) * Fraction(y) + Fraction(z) < 0)
            for x, y, z in zip(a, b, c)]
    np.testing.assert_array_equal(np.abs(got), np.abs(want))
    # and the unfused form differs somewhere: the test can tell the two apart
    assert (ar.add(ar.mul(a, b), c) != got).any()


def test_ftz_flushes_results_and_daz_inputs():
    ar = Arith("fp32", ftz=True, daz=True)
    tiny = FORMATS["fp32"].min_normal / 4
    assert ar.mul(np.array([tiny]), np.array([1.0]))[0] == 0.0
    assert ar.load(np.array([tiny]))[0] == 0.0
    assert Arith("fp32").mul(np.array([tiny]), np.array([1.0]))[0] == tiny


@pytest.mark.parametrize("name", ["bf16", "fp16", "fp8_e4m3fn"])
def test_truncate_is_round_toward_zero(name):
    fmt = FORMATS[name]
    rng = np.random.default_rng(3)
    values = rng.standard_normal(2000) * 2.0 ** rng.integers(-10, 6, 2000)
    got = truncate(values, fmt)
    assert fmt.is_representable(got).all()
    assert (np.abs(got) <= np.abs(values)).all()
    # the next representable value away from zero would exceed |value|
    assert (np.abs(got) + fmt.ulp(got) > np.abs(values)).all()
