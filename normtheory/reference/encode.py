"""Writing rounded values (float32, every one exactly a value of the format) as the format's
ml_dtypes array, in parallel: bf16 is the top half of the float32 pattern; fp16 is re-encoded
from the float32 fields (exact, since the value is an fp16 value). Other formats go through
their dtype's own cast, which is exact for values already in the format."""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from normtheory.formats import FloatFormat


@numba.njit(cache=True, nogil=True, parallel=True)
def _bf16_bits(bits32, out):
    for i in prange(bits32.shape[0]):
        out[i] = np.uint16(bits32[i] >> np.uint32(16))


@numba.njit(cache=True, nogil=True, parallel=True)
def _fp16_bits(bits32, out):
    for i in prange(bits32.shape[0]):
        b = bits32[i]
        sign = np.uint16((b >> np.uint32(16)) & np.uint32(0x8000))
        exponent = np.int64((b >> np.uint32(23)) & np.uint32(0xFF))
        mantissa = b & np.uint32(0x7FFFFF)
        if exponent == 0xFF:  # inf, NaN (a quiet NaN keeps a nonzero payload)
            out[i] = sign | np.uint16(0x7C00) | (np.uint16(0x200) if mantissa else np.uint16(0))
        elif exponent == 0:  # ±0 (no fp32 subnormal is an fp16 value)
            out[i] = sign
        elif exponent >= 113:  # fp16 normal: rebias 127 → 15, keep the top 10 mantissa bits
            out[i] = sign | np.uint16(((exponent - 112) << 10) | (mantissa >> np.uint32(13)))
        else:  # fp16 subnormal: (1.m)·2^(e−127) in units of 2^-24
            full = np.uint32(mantissa | np.uint32(0x800000))
            out[i] = sign | np.uint16(full >> np.uint32(126 - exponent))


def to_format(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """float32 values already in `fmt` → array of fmt.dtype (same shape)."""
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if fmt.name in ("bf16", "fp16"):
        out = np.empty(flat.shape, dtype=np.uint16)
        (_bf16_bits if fmt.name == "bf16" else _fp16_bits)(flat.view(np.uint32), out)
        return out.view(fmt.dtype).reshape(values.shape)
    return values.astype(fmt.dtype)
