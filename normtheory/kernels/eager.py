"""Eager PyTorch normalization kernels and the cast placements of popular model code.

Every function has the catalog signature `fn(x, weight, bias, eps, **params) -> y` on torch
tensors (weight/bias may be None). They are written from the formulas (docs/design.md,
docs/theory.md), not copied from the libraries whose behaviour they reproduce.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def torch_layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """`torch.nn.functional.layer_norm` over the last dimension (ATen's kernel)."""
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def torch_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """`torch.nn.functional.rms_norm` (ATen's fused kernel on CUDA, a composition on CPU)."""
    y = F.rms_norm(x, (x.shape[-1],), weight, eps)
    return y if bias is None else y + bias


def llama_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Hugging Face LlamaRMSNorm's cast placement: normalize in fp32, cast the normalized
    value to the input dtype, then multiply by the weight in the weight's dtype. The cast
    before the product is a second rounding (the `llama` model of the precision model)."""
    input_dtype = x.dtype
    x32 = x.to(torch.float32)
    variance = x32.pow(2).mean(-1, keepdim=True)
    normalized = (x32 * torch.rsqrt(variance + eps)).to(input_dtype)
    y = normalized if weight is None else weight * normalized
    return y if bias is None else y + bias


def gemma_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Gemma's RMSNorm: the scale is (1 + w) (affine `offset_weight`), everything computed in
    fp32 and rounded once to the input dtype at the end."""
    x32 = x.to(torch.float32)
    normalized = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        normalized = normalized * (1.0 + weight.to(torch.float32))
    if bias is not None:
        normalized = normalized + bias.to(torch.float32)
    return normalized.to(x.dtype)


def crms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """CRMSNorm on the d − 1 stored coordinates z of a zero-mean d-vector: the dropped
    coordinate is −Σz, so the mean square is (Σz² + (Σz)²)/d (Jiang et al. 2023)."""
    z = x.to(torch.float32)
    d = z.shape[-1] + 1
    mean_square = (z.pow(2).sum(-1, keepdim=True) + z.sum(-1, keepdim=True).pow(2)) / d
    y = z * torch.rsqrt(mean_square + eps)
    if weight is not None:
        y = y * weight.to(torch.float32)
    if bias is not None:
        y = y + bias.to(torch.float32)
    return y.to(x.dtype)


def torch_normalize(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """`torch.nn.functional.normalize` over the last dimension (p = 2): x / max(‖x‖₂, eps), as
    torch computes it in x's dtype (the norm is a tensor of that dtype before the division).
    F.normalize has no affine: the catalog entry takes affine `none` only."""
    return F.normalize(x, p=2.0, dim=-1, eps=eps)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused residual add + RMSNorm (vLLM, Transformer Engine): h = x + residual in the input
    dtype, y = RMSNorm(h). Returns (y, h)."""
    hidden = x + residual
    return torch_rms_norm(hidden, weight, bias, eps), hidden


def add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused residual add + LayerNorm. Returns (y, h) with h = x + residual in the input dtype."""
    hidden = x + residual
    return torch_layer_norm(hidden, weight, bias, eps), hidden
