"""The torch dtype of each normtheory format name: the one map that kernels/, certify/ and
theory/ use (formats torch lacks — fp6, fp4, or fnuz on an old torch — are absent)."""

from __future__ import annotations

import torch

_ATTRIBUTES = {
    "fp64": "float64", "fp32": "float32", "fp16": "float16", "bf16": "bfloat16",
    "fp8_e4m3fn": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2",
    "fp8_e4m3fnuz": "float8_e4m3fnuz", "fp8_e5m2fnuz": "float8_e5m2fnuz",
}
TORCH_DTYPES: dict[str, torch.dtype] = {
    name: getattr(torch, attribute) for name, attribute in _ATTRIBUTES.items() if hasattr(torch, attribute)
}
FORMAT_OF: dict[torch.dtype, str] = {dtype: name for name, dtype in TORCH_DTYPES.items()}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return TORCH_DTYPES[name]
    except KeyError:
        raise ValueError(f"torch has no dtype for {name!r} here; known: {', '.join(TORCH_DTYPES)}") from None
