"""Writing rounded values (each exactly a value of the format) as the format's bits, in
compiled code: bf16 is the top half of the float32 pattern; fp16 is re-encoded from the float32
fields (exact, since the value is an fp16 value). The row pass (rowpass.py) writes bf16 and
fp16 results straight in these encodings, fp32 as float32; other formats go through their
dtype's own cast, which is exact for values already in the format."""

from __future__ import annotations

import numba
import numpy as np

from normtheory.formats import FloatFormat
from normtheory.reference.threads import run_blocks

FLOAT32, BF16_BITS, FP16_BITS = 0, 1, 2  # how the row pass stores a format's results


def encoding_of(fmt: FloatFormat) -> int:
    return {"bf16": BF16_BITS, "fp16": FP16_BITS}.get(fmt.name, FLOAT32)


@numba.njit(cache=True, nogil=True, inline="always")
def bf16_bits(bits32):
    return np.uint16(bits32 >> np.uint32(16))


@numba.njit(cache=True, nogil=True, inline="always")
def fp16_bits(b):
    """fp16 pattern of an fp16 value given as a float32 pattern (uint32). Every case is worked
    out and one picked by selects, not branches, so that loops over it vectorize."""
    sign = (b >> np.uint32(16)) & np.uint32(0x8000)
    magnitude = b & np.uint32(0x7FFFFFFF)
    exponent = magnitude >> np.uint32(23)
    mantissa = magnitude & np.uint32(0x7FFFFF)
    normal = (magnitude >> np.uint32(13)) - np.uint32(112 << 10)  # rebias 127 → 15, top 10 mantissa bits
    # fp16 subnormal: (1.m)·2^(e−127) in units of 2^-24; ±0 shifts its implicit bit out (the
    # shift is capped below 32, as wider shifts are undefined; exponents above 126 wrap to the cap)
    shift = min(np.uint32(126) - exponent, np.uint32(31))
    subnormal = (mantissa | np.uint32(0x800000)) >> shift
    special = np.uint32(0x7C00) | (np.uint32(0x200) if mantissa != 0 else np.uint32(0))  # inf; quiet NaN
    value = normal if exponent >= 113 else subnormal
    value = special if exponent == 0xFF else value
    return np.uint16(sign | value)


@numba.njit(cache=True, nogil=True)
def _encode(bits32, out, start, stop, encoding):
    for i in range(start, stop):
        out[i] = bf16_bits(bits32[i]) if encoding == BF16_BITS else fp16_bits(bits32[i])


def to_format(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """float32 values already in `fmt` → array of fmt.dtype (same shape)."""
    encoding = encoding_of(fmt)
    if encoding == FLOAT32:
        return values.astype(fmt.dtype)
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint16)
    bits = flat.view(np.uint32)
    run_blocks(lambda start, stop: _encode(bits, out, start, stop, encoding), flat.size)
    return out.view(fmt.dtype).reshape(values.shape)
