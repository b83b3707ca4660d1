"""A gallery of deliberately defective normalization kernels (and careful ones), each with
the docs/design.md signature. Each defect is a bug class seen in real kernels; the certifier's
tests and notebook 05 show that every one fails certification with the right finding, and
you can use them to check that your own harness would catch them.

    normtheory certify normtheory.kernels.defective:one_pass_layer_norm --op layernorm --format fp32 --d 1024
"""

from __future__ import annotations

from typing import Any

import torch

from normtheory.kernels.fp8_output import scaled_fp8_cast
from normtheory.kernels.lp import StableLp, closed_form_backward


def _rms_scale(x32: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)


def careful_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Two-pass-free RMSNorm in fp32, one rounding at the end: what `default` describes."""
    x32 = x.float()
    y = x32 * _rms_scale(x32, eps)
    if weight is not None:
        y = y * weight.float()
    return y.to(x.dtype)


def careful_layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Two-pass LayerNorm in fp32, one rounding at the end."""
    x32 = x.float()
    centred = x32 - x32.mean(-1, keepdim=True)
    y = centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.float()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def fp16_sum_of_squares_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                                 eps: float) -> torch.Tensor:
    """Σx² squared and accumulated in fp16 (a tree of fp16 adds): overflows for |x| ≳ 256/√d
    per entry and loses bits on the way."""
    squares = x.half().pow(2)
    while squares.shape[-1] > 1:
        if squares.shape[-1] % 2:
            squares = torch.cat([squares, torch.zeros_like(squares[..., :1])], dim=-1)
        squares = squares[..., 0::2] + squares[..., 1::2]  # each add rounds to fp16
    mean_square = squares.float() / x.shape[-1]
    y = x.float() * torch.rsqrt(mean_square + eps)
    if weight is not None:
        y = y * weight.float()
    return y.to(x.dtype)


def one_pass_layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """var = E[x²] − E[x]² in fp32: catastrophic cancellation when |mean|/std is large."""
    x32 = x.float()
    mean = x32.mean(-1, keepdim=True)
    var = (x32.pow(2).mean(-1, keepdim=True) - mean.pow(2)).clamp_min(0)
    y = (x32 - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight.float()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def eps_outside_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """x / (sqrt(mean x²) + eps) where the specification puts eps inside the root."""
    x32 = x.float()
    y = x32 / (x32.pow(2).mean(-1, keepdim=True).sqrt() + eps)
    if weight is not None:
        y = y * weight.float()
    return y.to(x.dtype)


def truncating_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Correct fp32 result, then cast to bf16 by dropping the low 16 bits (round toward zero)."""
    y = careful_rms_norm(x.float(), weight.float() if weight is not None else None, None, eps)
    bits = y.view(torch.int32) & ~0xFFFF
    return bits.view(torch.float32).to(torch.bfloat16)


class _WrongBackwardRMSNorm(torch.autograd.Function):
    """Forward correct; backward forgets the projection term −n·mean(g·n) of the Jacobian."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        x32 = x.float()
        scale = _rms_scale(x32, eps)
        ctx.save_for_backward(x32, weight, scale)
        return (x32 * scale * weight.float()).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        x32, weight, scale = ctx.saved_tensors
        g = gy.float() * weight.float()
        gx = g * scale  # missing: − n·mean(g·n)·scale
        gw = (gy.float() * x32 * scale).sum(0)
        return gx.to(gy.dtype), gw.to(weight.dtype), None


def wrong_backward_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    return _WrongBackwardRMSNorm.apply(x, weight, eps)


class _LpWithoutProjection(StableLp):
    """The stable Lp kernel's forward; its backward forgets the term −K_b·φ of gx = (g − K_b·φ)/N."""

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple:  # type: ignore[override]
        return closed_form_backward(ctx, gy, lambda g, phi, k_b: g)


class _LpBf16Projection(StableLp):
    """The stable Lp kernel's forward; its backward keeps K_b = Σg·ŷ/d in bf16 (8 bits) before
    forming g − K_b·φ: the cancellation in that difference then magnifies bf16's rounding."""

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple:  # type: ignore[override]
        return closed_form_backward(ctx, gy, lambda g, phi, k_b: g - phi * k_b.to(torch.bfloat16).to(k_b.dtype))


def lp_norm_without_projection(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                               p: float | str) -> torch.Tensor:
    return _LpWithoutProjection.apply(x, weight, bias, eps, float(p))


def lp_norm_bf16_projection(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                            p: float | str) -> torch.Tensor:
    return _LpBf16Projection.apply(x, weight, bias, eps, float(p))


_calls = {"count": 0}


def nondeterministic_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                              eps: float) -> torch.Tensor:
    """Σx² in an order that changes from call to call (as with atomics): fp32 results differ
    in the last bits between runs, which rounding to the output can expose."""
    _calls["count"] += 1
    generator = torch.Generator().manual_seed(_calls["count"])
    order = torch.randperm(x.shape[-1], generator=generator)
    x32 = x.float()
    squares = x32[..., order].pow(2)
    total = torch.zeros(x.shape[:-1] + (1,), dtype=torch.float32)
    for column in range(squares.shape[-1]):  # sequential fp32 sum in the permuted order
        total = total + squares[..., column:column + 1]
    y = x32 * torch.rsqrt(total / x.shape[-1] + eps)
    if weight is not None:
        y = y * weight.float()
    return y.to(x.dtype)


def gemma_offset_in_bf16(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Gemma RMSNorm with (1 + w) formed in bf16 before the fp32 product."""
    x32 = x.float()
    y = x32 * _rms_scale(x32, eps)
    if weight is not None:
        y = y * (1.0 + weight.to(torch.bfloat16)).float()
    return y.to(x.dtype)


def nan_to_num_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Scrubs NaN inputs to 0 before normalizing: NaN inputs turned into numbers."""
    return careful_rms_norm(torch.nan_to_num(x, nan=0.0), weight, bias, eps)


def _fast_rsqrt_one_newton(v: torch.Tensor) -> torch.Tensor:
    """The bit-trick inverse square root (magic 0x5f3759df) with one Newton step: relative
    error up to about 1.75e-3."""
    i = v.view(torch.int32)
    guess = (0x5F3759DF - (i >> 1)).view(torch.float32)
    return guess * (1.5 - 0.5 * v * guess * guess)


def bit_trick_rsqrt_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    x32 = x.float()
    y = x32 * _fast_rsqrt_one_newton(x32.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.float()
    return y.to(x.dtype)


def clamped_variance_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                              eps: float) -> torch.Tensor:
    """rsqrt(max(mean x², eps)) instead of rsqrt(mean x² + eps): wrong only when mean x² is
    within a few binades of eps — a narrow band of input scales."""
    x32 = x.float()
    y = x32 * torch.rsqrt(torch.clamp_min(x32.pow(2).mean(-1, keepdim=True), eps))
    if weight is not None:
        y = y * weight.float()
    return y.to(x.dtype)


def raises(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


def wrong_shape(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    return careful_rms_norm(x, weight, bias, eps)[:, :-1]


def wrong_dtype(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    return careful_rms_norm(x, weight, bias, eps).float()


def returns_inf(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    y = careful_rms_norm(x, weight, bias, eps).clone()
    y[..., 0] = float("inf")
    return y


def rms_norm_fp8_double_rounded(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                                scaling: str = "tensor", out_dtype: torch.dtype = torch.float8_e4m3fn
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm → fp8 that rounds the normalized output to bf16 first, then scales and casts:
    fp32 → bf16 → fp8 is double rounding (a known bug class of fused norm → fp8 kernels)."""
    y = careful_rms_norm(x.float(), weight, None, eps).to(torch.bfloat16)
    return scaled_fp8_cast(y.float(), scaling=scaling, out_dtype=out_dtype)


def rms_norm_fp8_stale_scale(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                             scaling: str = "tensor", out_dtype: torch.dtype = torch.float8_e4m3fn
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm → fp8 with a hard-coded scale of 1 (a scale never updated from the amax): outputs
    beyond the fp8 range saturate, tiny ones flush, and the scale is not the recipe's."""
    y = careful_rms_norm(x.float(), weight, None, eps).float()
    limit = torch.finfo(out_dtype).max
    return torch.clamp(y, -limit, limit).to(out_dtype), torch.ones((), dtype=torch.float32)
