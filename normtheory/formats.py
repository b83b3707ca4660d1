"""Floating-point formats, each defined once in exact terms.

A `FloatFormat` knows its precision p (significand bits, the implicit bit included), its
exponent range [emin, emax] of normal numbers, whether it has infinities, and its numpy
dtype (ml_dtypes for bf16 and fp8). Everything else — unit roundoff, largest finite value,
rounding, ulps — is derived from those few numbers, and tests check the derivation against
what ml_dtypes and torch actually do on every bit pattern (house style rule 1).

Rounding is round-to-nearest-even, computed exactly: a float64 value is scaled by a power
of two so that the format's quantum at that value becomes 1, rounded with `np.rint` (exact
RNE in binary64), and scaled back. No double rounding: the result is exactly representable
in the target format before it is converted to the format's dtype.

Overflow (value beyond the largest finite number after rounding with an unbounded
exponent): by default ±inf, or NaN for formats without infinities (fp8 e4m3fn, the fnuz
variants) — the convention of ml_dtypes. `saturate=True` sends finite overflow and ±inf to
±largest finite and keeps NaN (what torch 2.13 on CPU does for e4m3fn). The OCP MX element
formats fp6_e2m3fn, fp6_e3m2fn and fp4_e2m1fn have neither inf nor NaN: they always
saturate (the only value left; ml_dtypes does the same), and a NaN input has no value there
(`round_to_float64` keeps it NaN; ml_dtypes' cast then writes −0, 0x20/0x08; never rely on it).

The fnuz formats ("finite, unsigned zero": AMD/Graphcore fp8) have one zero: a result that
rounds to zero is +0, and their single NaN is the pattern 0x80 (the would-be −0).

NaN encodings: values are produced through ml_dtypes' casts, so a NaN written by this module
has ml_dtypes' bytes (e4m3fn 0x7F, e5m2 0x7E, fnuz 0x80, bf16 0x7FC0, fp16 0x7E00). torch
writes e5m2 NaN as 0x7F/0xFF. Compare values with NaN as NaN, never bytes of NaNs.

The MX block-scale format e8m0 (a biased power of two, no sign, no zero) is not a
`FloatFormat` and not in `FORMATS`: nothing normalizes into it, and it has no zero or sign
for `round` to keep. It is `normtheory.scale_format.E8M0`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property

import ml_dtypes
import numpy as np

from normtheory.errors import UsageError


@dataclass(frozen=True)
class FloatFormat:
    name: str
    precision: int  # p: significand bits including the implicit leading bit
    emin: int  # exponent of the smallest normal number: min_normal = 2**emin
    emax: int  # exponent of the largest binade
    has_inf: bool
    dtype: np.dtype = field(repr=False)
    # Some formats give the top mantissa pattern of the top binade to NaN (e4m3fn: S.1111.111),
    # so their largest finite significand is one step below the usual 2 - 2**(1-p).
    top_binade_codes_lost: int = 0
    has_nan: bool = True  # the MX element formats fp6/fp4 have no NaN (and no inf)
    has_negative_zero: bool = True  # fnuz formats: one zero; the -0 pattern is their NaN
    encoded_bits: int | None = None  # bits of the encoding when narrower than the storage byte

    # ---- exact constants -------------------------------------------------------------
    @cached_property
    def width(self) -> int:
        """Bits of the encoding (6 for fp6, 4 for fp4; stored one value per byte)."""
        return self.encoded_bits or self.bits

    @cached_property
    def bits(self) -> int:
        return np.dtype(self.dtype).itemsize * 8

    @cached_property
    def bits_dtype(self) -> np.dtype:
        return np.dtype(f"uint{self.bits}")

    @cached_property
    def unit_roundoff(self) -> float:
        return math.ldexp(1.0, -self.precision)

    @cached_property
    def max_finite(self) -> float:
        steps = 2 ** (self.precision - 1) - 1 - self.top_binade_codes_lost
        significand = 1 + steps * 2.0 ** (1 - self.precision)
        return math.ldexp(significand, self.emax)

    @cached_property
    def min_normal(self) -> float:
        return math.ldexp(1.0, self.emin)

    @cached_property
    def min_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.precision + 1)

    # ---- rounding --------------------------------------------------------------------
    def round_to_float64(self, values, saturate: bool = False) -> np.ndarray:
        """Round float64 values to this format (RNE); return the rounded values as float64."""
        x = np.asarray(values, dtype=np.float64)
        if self.precision == 53:
            rounded = x.copy()
        else:
            rounded = _round_significand(x, self.precision)
            small = np.abs(x) < self.min_normal  # subnormal in the target: the quantum is fixed
            small &= x != 0
            if small.any():
                rounded[small] = _round_to_quantum(x[small], self.emin - (self.precision - 1))
        with np.errstate(invalid="ignore"):
            overflow = np.abs(rounded) > self.max_finite  # includes ±inf inputs; NaN compares False
        if overflow.any():
            if saturate or not (self.has_inf or self.has_nan):  # fp6/fp4 can only saturate
                replacement = np.copysign(self.max_finite, x)
            elif not self.has_inf:
                replacement = np.full_like(x, np.nan)
            else:
                replacement = np.copysign(np.inf, x)
            rounded[overflow] = replacement[overflow]
        if not self.has_negative_zero:
            rounded[rounded == 0] = 0.0  # fnuz: the only zero is +0
        return rounded

    def round(self, values, saturate: bool = False) -> np.ndarray:
        """Round float64 values (or mpmath numbers) to this format; array of `self.dtype`."""
        if _is_mp_like(values):
            values = round_exact_to_float64(values, self)
        # every value is representable now, so the conversion below is exact
        return self.from_exact_float64(self.round_to_float64(values, saturate))

    def ulp(self, values) -> np.ndarray:
        """Unit in the last place of this format at each value (the spacing of the binade)."""
        x = np.abs(np.asarray(values, dtype=np.float64))
        _, exponent = np.frexp(x)
        binade = np.maximum(np.where(x == 0, self.emin + 1, exponent) - 1, self.emin)
        return np.ldexp(1.0, binade - (self.precision - 1))

    # ---- bits and values -------------------------------------------------------------
    def to_bits(self, arr) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(arr, dtype=self.dtype)).view(self.bits_dtype)

    def from_bits(self, bits) -> np.ndarray:
        bits = np.ascontiguousarray(np.asarray(bits))
        if bits.dtype != self.bits_dtype:
            raise ValueError(f"{self.name} bits must be {self.bits_dtype}, got {bits.dtype}")
        return bits.view(self.dtype)

    def to_float64(self, arr) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # numpy warns when a NaN of an ml_dtypes type is widened
            return np.asarray(arr, dtype=self.dtype).astype(np.float64)

    def all_values(self) -> np.ndarray:
        """Every bit pattern of a format of at most 16 bits, decoded (for exhaustive tests)."""
        if self.width > 16:
            raise ValueError(f"{self.name} has 2**{self.width} patterns: too many to enumerate")
        return self.from_bits(np.arange(2**self.width, dtype=self.bits_dtype))

    def from_exact_float64(self, values) -> np.ndarray:
        """float64 values that are already in this format -> array of `self.dtype` (exact).

        bf16 goes through float32's bits (bf16 is fp32's top half), which is several times
        faster than ml_dtypes' cast and exact for representable values.
        """
        x = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            if self.name == "bf16":
                top_half = (x.astype(np.float32).view(np.uint32) >> np.uint32(16)).astype(np.uint16)
                return top_half.view(self.dtype)
            return x.astype(self.dtype)

    def is_representable(self, values) -> np.ndarray:
        """True where a float64 value is exactly a value of this format (NaN and ±inf count
        where the format has them)."""
        x = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            if self.name == "bf16":  # in fp32, with the low 16 bits of the fp32 pattern zero
                as_fp32 = x.astype(np.float32)
                same = (as_fp32 == x) & ((as_fp32.view(np.uint32) & np.uint32(0xFFFF)) == 0)
            else:
                # a representable value survives the round trip through the dtype exactly and a
                # non-representable one cannot, whatever rounding the cast itself uses
                same = x.astype(self.dtype).astype(np.float64) == x
        nan_ok = np.isnan(x) & self.has_nan
        inf_ok = np.isinf(x) & self.has_inf
        return same | nan_ok | inf_ok


def _round_significand(x: np.ndarray, precision: int) -> np.ndarray:
    """RNE of finite float64 values to `precision` significant bits, exponent unbounded.

    Works on the binary64 pattern: adding half an ulp of the target (minus one, plus the
    target's last bit, for ties-to-even) and clearing the dropped bits rounds the magnitude;
    a carry out of the significand correctly bumps the exponent. Exact, and ~10x faster than
    frexp/ldexp. Non-finite values are passed through unchanged.
    """
    dropped = np.uint64(52 - (precision - 1))
    rounded_bits = np.array(x, dtype=np.float64, copy=True, order="C").view(np.uint64)
    lsb = rounded_bits >> dropped
    lsb &= np.uint64(1)
    rounded_bits += np.uint64((1 << (int(dropped) - 1)) - 1)
    rounded_bits += lsb
    rounded_bits &= np.uint64(~((1 << int(dropped)) - 1) & 0xFFFFFFFFFFFFFFFF)
    rounded = rounded_bits.view(np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        rounded[~finite] = x[~finite]
    return rounded


def _round_to_quantum(x: np.ndarray, quantum_exp: int) -> np.ndarray:
    """RNE of float64 values to integer multiples of 2**quantum_exp (exact: rint is RNE)."""
    return np.ldexp(np.rint(np.ldexp(x, -quantum_exp)), quantum_exp)


def _is_mp_like(values) -> bool:
    try:
        import mpmath
    except ImportError:  # pragma: no cover - mpmath is a dependency
        return False
    if isinstance(values, (mpmath.mpf, Fraction)):
        return True
    arr = np.asarray(values)
    return arr.dtype == object


def round_exact_to_float64(values, fmt: FloatFormat) -> np.ndarray:
    """Round exact numbers (mpmath mpf, Fraction, int) RNE to `fmt`, returning float64.

    Works on the exact rational value: no intermediate rounding. Overflow is reported as
    ±inf here (the caller's `round` then applies the format's overflow convention).
    """
    arr = np.asarray(values, dtype=object)
    out = np.empty(arr.shape, dtype=np.float64)
    for index, value in np.ndenumerate(arr):
        out[index] = _round_one_exact(value, fmt)
    return out


def _round_one_exact(value, fmt: FloatFormat) -> float:
    import mpmath

    if isinstance(value, mpmath.mpf):
        if mpmath.isnan(value):
            return math.nan
        if mpmath.isinf(value):
            return math.inf if value > 0 else -math.inf
        sign, man, exp, _ = value._mpf_
        if man == 0:
            return -0.0 if sign else 0.0
        frac = Fraction(int(man)) * (Fraction(2) ** int(exp))
        negative = bool(sign)
    else:
        frac = Fraction(value)
        negative = frac < 0
        if frac == 0:
            return 0.0
    return round_fraction(abs(frac), fmt, negative)


def round_fraction(magnitude: Fraction, fmt: FloatFormat, negative: bool = False) -> float:
    """RNE of a positive exact rational to `fmt`, as float64 (±inf beyond fmt's range)."""
    if magnitude == 0:
        return -0.0 if negative else 0.0
    num, den = magnitude.numerator, magnitude.denominator
    # floor(log2(magnitude)) from bit lengths, corrected by one comparison
    e = num.bit_length() - den.bit_length()
    if Fraction(2) ** e > magnitude:
        e -= 1
    quantum_exp = max(e, fmt.emin) - (fmt.precision - 1)
    scaled = magnitude / (Fraction(2) ** quantum_exp)
    integer = scaled.numerator // scaled.denominator
    remainder = scaled - integer
    if remainder > Fraction(1, 2) or (remainder == Fraction(1, 2) and integer % 2 == 1):
        integer += 1
    try:
        result = math.ldexp(float(integer), quantum_exp)
    except OverflowError:
        result = math.inf
    if result > fmt.max_finite:
        result = math.inf
    return -result if negative else result


def round_dyadic(man: int, exp: int, fmt: FloatFormat) -> float:
    """RNE of the exact value man·2**exp (man a signed integer) to `fmt`, as float64.

    Integer arithmetic only (the slow path calls this for both ends of every arb ball);
    ±inf beyond the format's range, signed zero kept from man's sign when it rounds to 0.
    """
    negative = man < 0
    man = -man if negative else man
    if man == 0:
        return 0.0
    binade = man.bit_length() - 1 + exp
    quantum_exp = max(binade, fmt.emin) - (fmt.precision - 1)
    shift = quantum_exp - exp
    if shift > 0:
        quotient = man >> shift
        remainder = man - (quotient << shift)
        half = 1 << (shift - 1)
        if remainder > half or (remainder == half and quotient & 1):
            quotient += 1
        man, exp = quotient, quantum_exp
    try:
        result = math.ldexp(float(man), exp)
    except OverflowError:
        result = math.inf
    if result > fmt.max_finite:
        result = math.inf
    return -result if negative else result


def _make_formats() -> dict[str, FloatFormat]:
    formats = [
        FloatFormat("fp64", 53, -1022, 1023, True, np.dtype(np.float64)),
        FloatFormat("fp32", 24, -126, 127, True, np.dtype(np.float32)),
        FloatFormat("fp16", 11, -14, 15, True, np.dtype(np.float16)),
        FloatFormat("bf16", 8, -126, 127, True, np.dtype(ml_dtypes.bfloat16)),
        FloatFormat("fp8_e4m3fn", 4, -6, 8, False, np.dtype(ml_dtypes.float8_e4m3fn), top_binade_codes_lost=1),
        FloatFormat("fp8_e5m2", 3, -14, 15, True, np.dtype(ml_dtypes.float8_e5m2)),
        # fnuz: exponent bias one larger than e4m3fn/e5m2, so every binade moves down by one;
        # no inf, one zero, NaN = 0x80
        FloatFormat("fp8_e4m3fnuz", 4, -7, 7, False, np.dtype(ml_dtypes.float8_e4m3fnuz), has_negative_zero=False),
        FloatFormat("fp8_e5m2fnuz", 3, -15, 15, False, np.dtype(ml_dtypes.float8_e5m2fnuz), has_negative_zero=False),
        # OCP MX v1.0 element formats: no inf, no NaN; one value per byte in numpy
        FloatFormat("fp6_e2m3fn", 4, 0, 2, False, np.dtype(ml_dtypes.float6_e2m3fn), has_nan=False, encoded_bits=6),
        FloatFormat("fp6_e3m2fn", 3, -2, 4, False, np.dtype(ml_dtypes.float6_e3m2fn), has_nan=False, encoded_bits=6),
        FloatFormat("fp4_e2m1fn", 2, 0, 2, False, np.dtype(ml_dtypes.float4_e2m1fn), has_nan=False, encoded_bits=4),
    ]
    return {fmt.name: fmt for fmt in formats}


FORMATS: dict[str, FloatFormat] = _make_formats()


def as_format(fmt: str | FloatFormat) -> FloatFormat:
    """The edge between names and values: a `FloatFormat` passes through, a name is looked up
    (UsageError for unknown names). Inner layers take `FloatFormat` values only."""
    return fmt if isinstance(fmt, FloatFormat) else get_format(fmt)


def get_format(name: str) -> FloatFormat:
    """Look a format up by name; unknown names raise UsageError (exit 2 on the CLI)."""
    try:
        return FORMATS[name]
    except KeyError:
        if name in ("fp8_e8m0fnu", "e8m0", "e8m0fnu"):
            raise UsageError(f"{name!r} is the MX block-scale format (a power of two, no sign, no zero), "
                             "not a value format; known: " + ", ".join(FORMATS)) from None
        raise UsageError(f"unknown format {name!r}; known: {', '.join(FORMATS)}") from None
