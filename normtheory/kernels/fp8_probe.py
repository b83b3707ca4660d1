"""Probe: what the installed torch does when it casts fp32 to each fp8 dtype on a device.

Cast semantics changed between torch releases and differ by device (seen on this project's
machines: torch 2.11 on CUDA sends e4m3fn overflow to NaN, torch 2.13 on CPU saturates it to
±448, ±inf included). Code that emulates torch must ask, not assume. The probe casts a handful
of fp32 values and reports, per format and device:
- finite_overflow: "saturate" (±largest finite), "inf" or "nan" for a finite value far
  beyond the range (fp32's largest);
- inf_input: the same classification for ±inf;
- nan_bytes: the bytes torch writes for +NaN and −NaN (NaN bytes are not part of the value
  semantics: ml_dtypes writes e5m2 NaN as 0x7E, torch as 0x7F);
- negative_zero_byte: the byte of −0.0 (0x00 where the format has a single zero).
`saturates` is what `FloatFormat.round_to_float64(saturate=...)` needs to match torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch

from normtheory.kernels.dtypes import torch_dtype

TORCH_FP8 = {
    "fp8_e4m3fn": "float8_e4m3fn",
    "fp8_e5m2": "float8_e5m2",
    "fp8_e4m3fnuz": "float8_e4m3fnuz",
    "fp8_e5m2fnuz": "float8_e5m2fnuz",
}


@dataclass(frozen=True)
class CastBehaviour:
    format: str
    device: str
    torch_version: str
    finite_overflow: str
    inf_input: str
    nan_bytes: tuple[int, int]
    negative_zero_byte: int

    @property
    def saturates(self) -> bool:
        return self.finite_overflow == "saturate"

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def _classify(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return "inf" if math.isinf(value) else "saturate"


def probe_cast(name: str, device: str = "cpu") -> CastBehaviour:
    dtype = torch_dtype(name)
    # fp32 bit patterns: largest finite (±), ±inf, quiet NaN (+, −), −0.0; built from bits
    # because Python's float negation of NaN does not reliably reach the tensor's sign bit
    patterns = [0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x80000000]
    probes = torch.tensor([p - 2**32 if p >= 2**31 else p for p in patterns], dtype=torch.int32).view(torch.float32)
    cast = probes.to(device).to(dtype)
    values = cast.float().cpu().tolist()
    codes = cast.view(torch.uint8).cpu().tolist()
    positive, negative = _classify(values[0]), _classify(values[1])
    inf_pos, inf_neg = _classify(values[2]), _classify(values[3])
    if positive != negative or inf_pos != inf_neg:
        raise RuntimeError(f"{name} on {device}: overflow is not symmetric ({values[:4]})")
    return CastBehaviour(name, device, torch.__version__, positive, inf_pos, (codes[4], codes[5]), codes[6])


def probe_all(device: str = "cpu") -> dict[str, CastBehaviour]:
    return {name: probe_cast(name, device) for name in TORCH_FP8 if hasattr(torch, TORCH_FP8[name])}
