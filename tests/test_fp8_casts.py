"""Emulated fp8 casts against torch, bit for bit, on every fp16 and bf16 value and on 2^20
random fp32 values (specials included), in saturating and non-saturating modes.

Which mode torch's plain `.to(dtype)` uses is probed (kernels/fp8_probe.py), not assumed. The
saturating mode is also checked against torch's clamp-then-cast (what a saturating kernel
composes: clamp to ±fmax, then cast; clamping first gives the same result as rounding first
and then saturating, because RNE is monotone and ±fmax are representable). The mode torch's
plain cast does not implement on this device is checked against exact integer rounding
(tests/exact_rounding.py; e4m3fn on CPU).

NaN encodings (documented, not compared as bytes): ml_dtypes writes e4m3fn 0x7F (−NaN 0xFF),
e5m2 0x7E (0xFE), fnuz 0x80; torch writes the bytes `probe_cast(...).nan_bytes` reports (CPU torch 2.13: e4m3fn
0x7F/0xFF, e5m2 0x7F/0xFF, fnuz 0x80). Every non-NaN output byte must be identical, and the
NaN outputs must sit at the same positions.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from exact_rounding import exact_round_to_float64  # noqa: E402

from normtheory.formats import FORMATS  # noqa: E402
from normtheory.kernels.fp8_probe import TORCH_FP8, probe_cast, torch_dtype  # noqa: E402

FP8 = list(TORCH_FP8)
SPECIALS = np.array([np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0, 3.4028235e38, -3.4028235e38, 1e-45, -1e-45],
                    dtype=np.float32)


def every_16_bit_value() -> np.ndarray:
    with np.errstate(invalid="ignore"):
        fp16 = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)
        bf16 = np.arange(2**16, dtype=np.uint16).view(ml_dtypes.bfloat16).astype(np.float32)
    return np.concatenate([fp16, bf16, SPECIALS])


def random_fp32(count: int = 2**20, seed: int = 11) -> np.ndarray:
    bits = np.random.default_rng(seed).integers(0, 2**32, size=count, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([bits.view(np.float32), SPECIALS])  # NaN and inf patterns kept


def emulated_bytes(values32, name, saturate) -> np.ndarray:
    fmt = FORMATS[name]
    with np.errstate(invalid="ignore"):
        rounded = fmt.round_to_float64(values32.astype(np.float64), saturate=saturate)
    return fmt.to_bits(fmt.from_exact_float64(rounded))


def torch_bytes(values32, name, saturate, device="cpu") -> np.ndarray:
    tensor = torch.from_numpy(values32).to(device)
    if saturate:
        fmax = float(torch.finfo(torch_dtype(name)).max)
        tensor = torch.clamp(tensor, -fmax, fmax)
    return tensor.to(torch_dtype(name)).view(torch.uint8).cpu().numpy()


def assert_same_bytes(ours, theirs, name, nan_bytes):
    fmt = FORMATS[name]
    ours_nan = np.isnan(fmt.to_float64(fmt.from_bits(ours)))
    theirs_nan = np.isnan(fmt.to_float64(fmt.from_bits(theirs)))
    assert np.array_equal(ours_nan, theirs_nan), f"{name}: NaN at different positions"
    mismatch = np.flatnonzero((ours != theirs) & ~ours_nan)
    assert mismatch.size == 0, f"{name}: {mismatch.size} bytes differ, first at {mismatch[:5]}"
    assert set(np.unique(theirs[theirs_nan]).tolist()) <= set(nan_bytes), f"{name}: undocumented NaN byte"


def _check(values32, name, device="cpu"):
    behaviour = probe_cast(name, device)
    for saturate in (True, False):
        ours = emulated_bytes(values32, name, saturate)
        if saturate or not behaviour.saturates:
            theirs = torch_bytes(values32, name, saturate, device)
            assert_same_bytes(ours, theirs, name, behaviour.nan_bytes)
        else:  # torch's plain cast saturates here: the non-saturating mode is checked on exact arithmetic
            with np.errstate(invalid="ignore"):
                exact = exact_round_to_float64(values32.astype(np.float64), FORMATS[name])
            fmt = FORMATS[name]
            nan_bytes = tuple(np.unique(ours[np.isnan(exact)]).tolist()) or (0,)
            assert_same_bytes(ours, fmt.to_bits(fmt.from_exact_float64(exact)), name, nan_bytes)


@pytest.mark.parametrize("name", FP8)
def test_every_16_bit_value(name):
    _check(every_16_bit_value(), name)


@pytest.mark.parametrize("name", FP8)
def test_random_fp32(name):
    _check(random_fp32(), name)


def test_a_wrong_mode_is_detected():
    """The same byte comparison fails when the emulation uses the other overflow mode."""
    values = every_16_bit_value()
    behaviour = probe_cast("fp8_e5m2")
    wrong = emulated_bytes(values, "fp8_e5m2", saturate=not behaviour.saturates)
    with pytest.raises(AssertionError):
        assert_same_bytes(wrong, torch_bytes(values, "fp8_e5m2", False), "fp8_e5m2", behaviour.nan_bytes)


@pytest.mark.gpu
@pytest.mark.parametrize("name", FP8)
def test_cuda_casts(name):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _check(np.concatenate([every_16_bit_value(), random_fp32(seed=12)]), name, device="cuda")
