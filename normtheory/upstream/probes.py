"""Probes: each runs the installed package on a few chosen inputs and names what it saw.

A probe returns the observed behaviour as one of the short strings of `facts.FACTS`, or a
string no row has (a new behaviour), and raises `NotApplicable` when it cannot run here (the
package is missing, no CUDA device, a CPU the fact does not cover). Probes import torch and
Liger inside the function: `normtheory upstream --help` must not import them.
"""

from __future__ import annotations

import importlib.util
import platform
from collections.abc import Callable

import ml_dtypes
import numpy as np

from normtheory.formats import FORMATS


class NotApplicable(Exception):
    """The probe cannot run on this machine (the reason is the message)."""


def _float64_cast_rounds_once(dtype, above_midpoint: float, correct: float) -> str:
    got = float(np.float64(above_midpoint).astype(dtype))
    if got == correct:
        return "rounds once"
    return "double-rounds via float32" if got == float(np.float32(above_midpoint).astype(dtype)) else f"gives {got!r}"


def float64_to_bf16() -> str:
    # 1 + 2^-8 is the bf16 midpoint of 1 and 1 + 2^-7; float32 rounds the next float64 onto it
    return _float64_cast_rounds_once(ml_dtypes.bfloat16, float(np.nextafter(1.0 + 2.0**-8, 2.0)), 1.0 + 2.0**-7)


def float64_to_fp8() -> str:
    return _float64_cast_rounds_once(ml_dtypes.float8_e4m3fn, float(np.nextafter(1.0 + 2.0**-4, 2.0)), 1.125)


def _every_16_bit_value_and_random_fp32() -> np.ndarray:
    with np.errstate(invalid="ignore"):
        values = [np.arange(2**16, dtype=np.uint16).view(dt).astype(np.float32) for dt in (np.float16, ml_dtypes.bfloat16)]
    bits = np.random.default_rng(0).integers(0, 2**32, size=2**16, dtype=np.uint64).astype(np.uint32)
    values.append(bits.view(np.float32))
    return np.concatenate(values)


def float32_to_narrow() -> str:
    """ml_dtypes' float32 casts against `FloatFormat.round` (itself tested against exact
    integer arithmetic in tests/test_formats.py). Names the first format that differs."""
    values32 = _every_16_bit_value_and_random_fp32()
    for name in ("fp16", "bf16", "fp8_e4m3fn", "fp8_e5m2", "fp8_e4m3fnuz", "fp8_e5m2fnuz",
                 "fp6_e2m3fn", "fp6_e3m2fn", "fp4_e2m1fn"):
        fmt = FORMATS[name]
        inputs = values32 if fmt.has_nan else values32[~np.isnan(values32)]  # NaN has no value there
        with np.errstate(invalid="ignore", over="ignore"):
            theirs = inputs.astype(fmt.dtype).astype(np.float64)
            ours = fmt.round_to_float64(inputs.astype(np.float64))
        same = (np.isnan(ours) & np.isnan(theirs)) | (ours == theirs)
        if not same.all():
            return f"differs in {name} ({int((~same).sum())} values)"
    return "correctly rounded"


def _e8m0_of(values32) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.asarray(values32, np.float32).astype(ml_dtypes.float8_e8m0fnu).astype(np.float64)


def e8m0_subnormal_fp32() -> str:
    got = _e8m0_of([np.ldexp(np.float32(1.03125), -127)])[0]
    return {2.0**-127: "nearest", 2.0**-126: "rounds up to 2^-126"}.get(got, f"gives {got!r}")


def e8m0_cast_rule() -> str:
    """Normal-range ties (1.5·2^k), just below them (1.49·2^k), the largest tie 1.5·2^127 and
    the no-value inputs; the subnormal quirk is its own fact."""
    k = np.arange(-120, 127)
    ties, below_ties = _e8m0_of(np.ldexp(1.5, k)), _e8m0_of(np.ldexp(1.49, k))
    ties_rule = ("ties up" if np.array_equal(ties, np.ldexp(1.0, k + 1)) else
                     "ties to the even code" if np.array_equal(ties, np.ldexp(1.0, k + (k % 2 == 0))) else "")
    ties_rule = ties_rule if np.array_equal(below_ties, np.ldexp(1.0, k)) else ""
    top = _e8m0_of([np.ldexp(1.5, 127)])[0]
    no_value = np.isnan(_e8m0_of([0.0, -1.0, np.inf, np.nan])).all()
    if ties_rule == "ties up" and np.isnan(top) and no_value:
        return "nearest power of two, ties up; 0, <0, inf, NaN -> NaN"
    if ties_rule == "ties to the even code" and top == 2.0**127 and no_value:
        # the byte is the biased exponent e + 127: an even code is an odd exponent
        return "nearest power of two, ties to the even code; 1.5·2^127 -> 2^127"
    return f"other (ties: {ties_rule or 'neither rule'}, 1.5·2^127 -> {top!r}, no-value inputs NaN: {no_value})"


def _torch():
    if importlib.util.find_spec("torch") is None:
        raise NotApplicable("torch is not installed")
    import torch

    return torch


def _torch_cast_overflow(name: str, device: str) -> str:
    _torch()
    from normtheory.kernels.fp8_probe import probe_cast

    if device == "cuda" and not _torch().cuda.is_available():
        raise NotApplicable("no CUDA device")
    return probe_cast(name, device).finite_overflow


def torch_cpu_fnuz_conventions() -> str:
    _torch()
    from normtheory.kernels.fp8_probe import probe_cast

    b = probe_cast("fp8_e4m3fnuz", "cpu")
    nan_bytes = f"{b.nan_bytes[0]:#04x}/{b.nan_bytes[1]:#04x}"
    return f"overflow {b.finite_overflow}, NaN bytes {nan_bytes}, -0 -> {b.negative_zero_byte:#04x}"


def torch_cpu_e8m0_zero_and_negative() -> str:
    torch = _torch()
    if not hasattr(torch, "float8_e8m0fnu"):
        raise NotApplicable("this torch has no float8_e8m0fnu")
    codes = torch.tensor([0.0, -1.0]).to(torch.float8_e8m0fnu).view(torch.uint8).tolist()
    return f"0 -> {codes[0]:#04x}, -1 -> {codes[1]:#04x}"


def torch_cpu_norm_kernels_match_mirrors() -> str:
    torch = _torch()
    from normtheory.families import FAMILIES, draw_rows
    from normtheory.kernels import eager
    from normtheory.precision.mirrors import cpu as mirrors

    if platform.machine() != "x86_64" or torch.backends.cpu.get_cpu_capability() not in mirrors.MIRRORED_CAPABILITIES:
        raise NotApplicable("the mirrors model x86-64 AVX2/AVX512 builds")
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    rng = np.random.default_rng(0)
    for name, dtype in dtypes.items():
        fmt = FORMATS[name]
        for family in sorted(FAMILIES):
            for width in (7, 64, 129):
                x = draw_rows(family, rng, 2, width, fmt)
                w = fmt.round_to_float64(1 + 0.1 * rng.standard_normal(width))
                xt, wt = torch.tensor(x, dtype=dtype), torch.tensor(w, dtype=dtype)
                pairs = (("rms_norm", eager.torch_rms_norm(xt, wt, None, 1e-6),
                          mirrors.torch_rms_norm(x, w, eps=1e-6, format=name)),
                         ("layer_norm", eager.torch_layer_norm(xt, wt, None, 1e-5),
                          mirrors.torch_layer_norm(x, w, eps=1e-5, format=name)))
                for what, kernel, mirror in pairs:
                    got = kernel.to(torch.float32).numpy().view(np.int32)
                    if not np.array_equal(got, np.asarray(mirror, np.float32).view(np.int32)):
                        return f"differs ({what} {name} {family} d={width})"
    return "bit-identical"


def liger_rms_norm_default_casting() -> str:
    if importlib.util.find_spec("liger_kernel") is None:
        raise NotApplicable("liger-kernel is not installed")
    import inspect

    try:
        from liger_kernel.transformers.rms_norm import LigerRMSNorm
    except Exception as exc:  # Liger imports Triton, which may not load without a GPU
        raise NotApplicable(f"liger_kernel does not import here ({type(exc).__name__})") from None
    return str(inspect.signature(LigerRMSNorm.__init__).parameters["casting_mode"].default)


PROBES: dict[str, Callable[[], str]] = {
    "ml_dtypes.float64_to_bf16": float64_to_bf16,
    "ml_dtypes.float64_to_fp8": float64_to_fp8,
    "ml_dtypes.float32_to_narrow": float32_to_narrow,
    "ml_dtypes.e8m0_subnormal_fp32": e8m0_subnormal_fp32,
    "ml_dtypes.e8m0_cast_rule": e8m0_cast_rule,
    "torch.cpu.fp8_e4m3fn_overflow": lambda: _torch_cast_overflow("fp8_e4m3fn", "cpu"),
    "torch.cpu.fp8_e5m2_overflow": lambda: _torch_cast_overflow("fp8_e5m2", "cpu"),
    "torch.cpu.fp8_e4m3fnuz_conventions": torch_cpu_fnuz_conventions,
    "torch.cpu.e8m0_zero_and_negative": torch_cpu_e8m0_zero_and_negative,
    "torch.cpu.norm_kernels_match_mirrors": torch_cpu_norm_kernels_match_mirrors,
    "torch.cuda.fp8_e4m3fn_overflow": lambda: _torch_cast_overflow("fp8_e4m3fn", "cuda"),
    "torch.cuda.fp8_e5m2_overflow": lambda: _torch_cast_overflow("fp8_e5m2", "cuda"),
    "liger.rms_norm_default_casting": liger_rms_norm_default_casting,
}
