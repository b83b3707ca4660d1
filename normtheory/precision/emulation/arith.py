"""Rounded arithmetic of a modelled accumulator format, on float64 arrays.

Every operation is computed in binary64 and rounded once (RNE) to the accumulator format.
For +, -, *, / and sqrt that equals the operation done directly in the narrower format,
because binary64 has p64 = 53 >= 2p + 2 bits for p <= 24 (fp32, fp16, bf16): the classic
innocuous-double-rounding theorem (Figueroa 1995). A fused multiply-add a*b + c is different:
a*b is exact in binary64 (2p <= 48 bits) but the sum is not, so it is computed with an
error-free TwoSum and rounded to odd in binary64 first; rounding to odd at 53 bits followed
by RNE at p <= 51 bits is a correct single rounding (Boldo and Melquiond 2008).

Subnormals: by default kept (gradual underflow, IEEE). With `ftz=True` every result below the
format's smallest normal becomes a signed zero, and with `daz=True` the same happens to inputs
as they are loaded — the FTZ/DAZ modes of GPUs.

Rounding uses numpy's float64 -> float32/float16 casts (exact RNE; checked against
`FloatFormat.round_to_float64` in tests) and `FloatFormat.round_to_float64` for other formats
(ml_dtypes' float64 -> bfloat16 cast rounds twice, through float32).
"""

from __future__ import annotations

import numpy as np

from normtheory.formats import FloatFormat, as_format

_NUMPY_CAST = {"fp32": np.float32, "fp16": np.float16, "fp64": np.float64}


class Arith:
    """Rounded operations of one format; arrays in, float64 arrays (format values) out."""

    def __init__(self, fmt: FloatFormat | str, ftz: bool = False, daz: bool = False):
        self.fmt = as_format(fmt)
        self.ftz = ftz
        self.daz = daz
        self._cast = _NUMPY_CAST.get(self.fmt.name)

    @property
    def u(self) -> float:
        return self.fmt.unit_roundoff

    def round(self, values) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if self._cast is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                rounded = values.astype(self._cast).astype(np.float64)
        else:
            rounded = self.fmt.round_to_float64(values)
        if self.ftz:
            rounded = _flush(rounded, self.fmt.min_normal)
        return rounded

    def load(self, values) -> np.ndarray:
        """Convert inputs to the accumulator: exact when they are representable in it (the case
        bounds/forward.py covers), rounded otherwise; DAZ flushes subnormal inputs."""
        values = self.round(values) if not self.ftz else _flush(self.round(values), self.fmt.min_normal)
        return _flush(values, self.fmt.min_normal) if self.daz else values

    def add(self, a, b):
        return self.round(np.add(a, b))

    def sub(self, a, b):
        return self.round(np.subtract(a, b))

    def mul(self, a, b):
        return self.round(np.multiply(a, b))

    def div(self, a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.round(np.divide(a, b))

    def sqrt(self, a):
        with np.errstate(invalid="ignore"):
            return self.round(np.sqrt(a))

    def fma(self, a, b, c):
        """a*b + c with one rounding (a, b, c values of a format with p <= 24)."""
        product = np.multiply(a, b)  # exact: at most 48 significant bits
        with np.errstate(invalid="ignore", over="ignore"):
            total = product + c
            err = (product - (total - (total - product))) + (c - (total - product))
        return self.round(_round_to_odd(total, err))

    def mul_add(self, a, b, c, contract: bool):
        """a*b + c as a compiler would emit it: one FMA when contracting, else two roundings."""
        return self.fma(a, b, c) if contract else self.add(self.mul(a, b), c)


def _round_to_odd(rounded: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Given RN(s) and the exact error s - RN(s), return RO(s): the odd neighbour if inexact."""
    inexact = (err != 0) & np.isfinite(rounded)
    if not inexact.any():
        return rounded
    bits = rounded.view(np.uint64)
    even = (bits & np.uint64(1)) == 0
    move = inexact & even
    out = rounded.copy()
    out[move] = np.nextafter(rounded[move], np.where(err[move] > 0, np.inf, -np.inf))
    return out


def _flush(values: np.ndarray, min_normal: float) -> np.ndarray:
    tiny = np.abs(values) < min_normal
    return np.where(tiny, np.copysign(0.0, values), values)
