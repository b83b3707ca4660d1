"""Norm → fp8 output kernels as torch eager compositions (what a fused TE LayerNorm/RMSNorm with
an fp8 output computes): normalize in fp32, take amax, form the scale, multiply, cast.

Signature (docs/design.md): `fn(x, weight, bias, eps, *, scaling="tensor", out_dtype=..., margin=0,
amax_history=None, power_of_two=False) -> (y_fp8, scale)`.

Scale convention (Transformer Engine's, the same as normtheory.precision.lowprecision.scaling):
y_fp8 = cast(fl32(y·scale)), and y ≈ y_fp8.float() / scale. `scale` is an fp32 tensor of
shape () for "tensor"/"delayed", (rows, 1) for "row", (rows, ceil(n/N)) for "block:N" and
"mx[:N]" (for MX, scale = 2**-E with 2**E the e8m0 shared scale; the cast saturates).
"delayed" needs `amax_history` (a 1-D fp32 tensor, updated in place: this step's amax is
pushed after the cast) and uses the scale derived from the history's max before the update.
Being stateless, it falls back to 1.0 where that max is 0 or not finite; the emulation
(`scaling.DelayedScaling`) keeps the previous scale there, as TE does — they agree whenever
the history is finite and nonzero.

The cast is torch's own `.to(out_dtype)`: saturating or not as the installed torch does it
(normtheory.kernels.fp8_probe finds out which). This module computes its scales with torch
from the recipe's definition, independently of the numpy emulation that judges it.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def _parse(scaling: str) -> tuple[str, int | None]:
    kind, _, size = scaling.partition(":")
    if kind in ("tensor", "delayed", "row") and not size:
        return kind, None
    if kind == "mx" and not size:
        return kind, 32
    if kind in ("block", "mx") and size.isdigit() and int(size) >= 1:
        return kind, int(size)
    raise ValueError(f"unknown scaling {scaling!r}")


def _block_size(kind: str, block: int | None) -> int:
    """The group size of a "block"/"mx" recipe (_parse gives one to exactly those)."""
    if block is None:
        raise ValueError(f"scaling {kind!r} has no block size")
    return block


def _group_amax(y: torch.Tensor, kind: str, block: int | None) -> torch.Tensor:
    a = y.abs()
    if kind in ("tensor", "delayed"):
        return a.max() if a.numel() else torch.zeros((), dtype=y.dtype, device=y.device)
    if kind == "row":
        return a.amax(dim=-1, keepdim=True)
    block = _block_size(kind, block)
    n = a.shape[-1]
    pad = (-n) % block
    a = torch.nn.functional.pad(a, (0, pad))
    return a.reshape(*a.shape[:-1], -1, block).amax(dim=-1)


def _scale_from_amax(amax: torch.Tensor, fmax: float, margin: int, previous: torch.Tensor,
                     power_of_two: bool) -> torch.Tensor:
    scale = torch.tensor(fmax, dtype=torch.float32, device=amax.device) / amax  # fp32 division
    fp32 = torch.finfo(torch.float32)
    scale = torch.clamp(scale, max=fp32.max) * (2.0**-margin)
    scale = torch.clamp(scale, min=fp32.tiny)
    if power_of_two:
        scale = torch.exp2(torch.floor(torch.log2(scale)))
    usable = torch.isfinite(amax) & (amax > 0)
    return torch.where(usable, scale, previous)


def _expand(scale: torch.Tensor, n: int, kind: str, block: int | None) -> torch.Tensor:
    if kind in ("tensor", "delayed", "row"):
        return scale
    return scale.repeat_interleave(_block_size(kind, block), dim=-1)[..., :n]


def _mx_scale(amax: torch.Tensor, emax: int) -> torch.Tensor:
    _, exponent = torch.frexp(torch.where(torch.isfinite(amax) & (amax > 0), amax, torch.ones_like(amax)))
    shared = torch.clamp(exponent - 1 - emax, min=-127).to(torch.float32)
    shared = torch.where(amax == 0, torch.full_like(shared, -127.0), shared)
    shared = torch.where(torch.isfinite(amax), shared, torch.full_like(shared, math.nan))
    return torch.exp2(-shared)


def _emax(out_dtype: torch.dtype) -> int:
    return int(math.floor(math.log2(torch.finfo(out_dtype).max)))


def scaled_fp8_cast(y: torch.Tensor, *, scaling: str = "tensor", out_dtype: torch.dtype = torch.float8_e4m3fn,
                    margin: int = 0, amax_history: torch.Tensor | None = None,
                    power_of_two: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 y -> (cast(y·scale), scale) under a recipe (module doc)."""
    kind, block = _parse(scaling)
    y = y.float()
    fmax = float(torch.finfo(out_dtype).max)
    n = y.shape[-1]
    if kind == "mx":
        scale = _mx_scale(_group_amax(y, kind, block), _emax(out_dtype))
        scaled = y * _expand(scale, n, kind, block)
        return torch.clamp(scaled, -fmax, fmax).to(out_dtype), scale  # MX casts saturate; clamp keeps NaN
    if kind == "delayed":
        if amax_history is None:
            raise ValueError("delayed scaling needs amax_history")
        reduced = amax_history.max()
        one = torch.ones((), dtype=torch.float32, device=y.device)
        scale = _scale_from_amax(reduced, fmax, margin, one, power_of_two)
        amax_history.copy_(torch.roll(amax_history, 1))
        amax_history[0] = _group_amax(y, kind, block)
    else:
        amax = _group_amax(y, kind, block)
        scale = _scale_from_amax(amax, fmax, margin, torch.ones_like(amax), power_of_two)
    return (y * _expand(scale, n, kind, block)).to(out_dtype), scale


def rms_norm_fp8(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                 **scaled: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm in fp32 (torch.rms_norm), optional bias, then the scaled fp8 cast."""
    y = torch.rms_norm(x.float(), (x.shape[-1],), None if weight is None else weight.float(), eps)
    if bias is not None:
        y = y + bias.float()
    return scaled_fp8_cast(y, **scaled)


def layer_norm_fp8(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                   **scaled: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """LayerNorm in fp32 (torch.layer_norm), then the scaled fp8 cast."""
    y = torch.layer_norm(x.float(), (x.shape[-1],), None if weight is None else weight.float(),
                         None if bias is None else bias.float(), eps)
    return scaled_fp8_cast(y, **scaled)
