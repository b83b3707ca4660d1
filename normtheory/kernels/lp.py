"""Lp normalizers in torch: a naive kernel (power, sum, root) and a stable one (rescale first).

Both compute y = x / ((1/d)Σ|x_i|^p + eps^(p/2))^(1/p) · w + b (registry.py: eps is an RMS
floor √eps for every p; p = inf is x / max(max|x_i|, √eps)), in the input dtype, with every
intermediate in fp32 (float64 for float64 inputs), and round once at the output.
Signature convention (docs/design.md): fn(x, weight, bias, eps, p) -> y; weight/bias may be None.

Why two kernels: the naive one forms |x_i|^p directly, so its sum overflows once
Σ|x_i|^p exceeds the accumulator's largest finite value (then N = inf and y is silently 0),
and its floor eps^(p/2) underflows to 0 for large p (then a zero row gives 0/0).
normtheory.theory.lp.thresholds predicts both. The stable kernel divides by
K = max(max|x_i|, √eps) first: every |x_i/K| ≤ 1, the largest term is exactly 1 (or the
floor is exactly 1), so nothing overflows and no relevant term underflows for any finite x.
Its a-priori error bound is normtheory.precision.bounds.lp.stable_forward_bound.
"""

from __future__ import annotations

import math

import torch

from normtheory.registry import parse_p


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _affine(y: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    if weight is not None:
        y = y * weight.to(y.dtype)
    if bias is not None:
        y = y + bias.to(y.dtype)
    return y


def _max_norm(xa: torch.Tensor, eps: float) -> torch.Tensor:
    """x / max(max|x|, √eps): one division, the same in both kernels (there is no power)."""
    floor_root = torch.tensor(math.sqrt(eps), dtype=xa.dtype, device=xa.device)
    scale = torch.maximum(xa.abs().amax(dim=-1, keepdim=True), floor_root)
    return xa / scale


def lp_norm_naive(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float, p: float | str,
                  acc_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Power, sum, root: N = (Σ|x|^p / d + eps^(p/2))^(1/p), y = x / N.

    `acc_dtype` (default fp32) is the dtype the powers, their sum and the root are stored in;
    fp16 or bf16 there models a kernel that accumulates in the input's own format.
    """
    p = parse_p(p)
    acc = acc_dtype or _accumulator(x.dtype)
    xa = x.to(acc)
    if math.isinf(p):
        return _affine(_max_norm(xa, eps), weight, bias).to(x.dtype)
    d = x.shape[-1]
    total = (xa.abs() ** p).sum(dim=-1, keepdim=True)
    floor = torch.tensor(eps ** (p / 2), dtype=acc, device=x.device)  # may underflow to 0 (large p)
    norm = (total / d + floor) ** (1.0 / p)
    return _affine(xa / norm, weight, bias).to(x.dtype)


def lp_norm_stable(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                   p: float | str) -> torch.Tensor:
    """Rescale by K = max(max|x|, √eps), then power, sum, root: y = (x/K) / (mean|x/K|^p + (√eps/K)^p)^(1/p).

    K cancels in exact arithmetic. In floating point |x_i/K| ≤ 1, so the sum lies in [1, d]
    (the entry at the maximum gives exactly 1) or the floor term is exactly 1 (K = √eps):
    t = mean + floor lies in [1/d, 2] and the root in [d^(-1/p), 2^(1/p)] for every finite x.
    The output is formed as (x/K)/root, never K·root, which could overflow near the top of fp32.
    A zero row with eps = 0 gives 0/0 = NaN, as the exact formula does (reference/api.py).
    """
    p = parse_p(p)
    xa = x.to(_accumulator(x.dtype))
    if math.isinf(p):
        return _affine(_max_norm(xa, eps), weight, bias).to(x.dtype)
    d = x.shape[-1]
    floor_root = torch.tensor(math.sqrt(eps), dtype=xa.dtype, device=x.device)
    scale = torch.maximum(xa.abs().amax(dim=-1, keepdim=True), floor_root)
    scaled = xa / scale
    floor = (floor_root / scale) ** p  # ≤ 1; it underflows only when the sum (≥ 1) dominates it
    t = (scaled.abs() ** p).sum(dim=-1, keepdim=True) / d + floor
    return _affine(scaled / t ** (1.0 / p), weight, bias).to(x.dtype)
