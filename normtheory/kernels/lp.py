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

Backward: the naive kernel's is torch autograd through its operations. The stable kernel has
an explicit backward (`StableLp`): the closed-form vector-Jacobian product gx = (g − K_b·φ)/N
of precision/emulation/lp.emulate_stable_backward, the algorithm that
precision/bounds/lp.stable_backward_bound bounds. Autograd through the stable forward would be
another algorithm (it differentiates through K and the root, whose contributions cancel only in
exact arithmetic), which that bound does not cover.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
    The backward is the closed form of `StableLp.backward` (module docstring).
    """
    return StableLp.apply(x, weight, bias, eps, parse_p(p))


def _stable_parts(xa: torch.Tensor, eps: float, p: float) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(ŷ before the affine step, the root R per row (None for p = inf), the scale K per row), in xa's dtype."""
    floor_root = torch.tensor(math.sqrt(eps), dtype=xa.dtype, device=xa.device)
    scale = torch.maximum(xa.abs().amax(dim=-1, keepdim=True), floor_root)
    scaled = xa / scale
    if math.isinf(p):
        return scaled, None, scale
    d = xa.shape[-1]
    floor = (floor_root / scale) ** p  # ≤ 1; it underflows only when the sum (≥ 1) dominates it
    t = (scaled.abs() ** p).sum(dim=-1, keepdim=True) / d + floor
    root = t ** (1.0 / p)
    return scaled / root, root, scale


class StableLp(torch.autograd.Function):
    """The stable kernel with the closed-form backward that precision/bounds/lp.stable_backward_bound
    bounds (emulation/lp.emulate_stable_backward, step for step, in the accumulator):
        g = gy·w;  K_b = (Σ g·ŷ)·fl(1/d);  φ = sign(x)·|ŷ|^(p−1) (p = 1: sign(x); p = 2: ŷ;
        p = inf: fl(d/k)·sign(x) on the k entries at max|x| when max|x| ≥ fl(√eps), else 0)
        t = g − φ·K_b (the product rounded first);  gx = (t/R)/K (p = inf: t/K)
        gw = Σ_rows gy·ŷ;  gb = Σ_rows gy;  each gradient rounded once to its tensor's dtype."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, p):  # type: ignore[override]
        xa = x.to(_accumulator(x.dtype))
        normalized, root, scale = _stable_parts(xa, eps, p)
        ctx.save_for_backward(xa, weight, normalized, scale, *(() if root is None else (root,)))
        ctx.p, ctx.x_dtype, ctx.bias_dtype = p, x.dtype, None if bias is None else bias.dtype
        return _affine(normalized, weight, bias).to(x.dtype)

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        return closed_form_backward(ctx, gy, numerator)


def numerator(g: torch.Tensor, phi: torch.Tensor, k_b: torch.Tensor) -> torch.Tensor:
    """t = g − φ·K_b, the product rounded first (torch does not contract it)."""
    return g - phi * k_b


def closed_form_backward(ctx, gy: torch.Tensor, form_numerator: Callable[..., torch.Tensor]) -> tuple:
    """(gx, gw, gb, None, None) of `StableLp` from its saved tensors; `form_numerator(g, φ, K_b)`
    forms t (kernels/defective.py swaps it for defective ones)."""
    xa, weight, normalized, scale, *root = ctx.saved_tensors
    p, d = ctx.p, xa.shape[-1]
    gy = gy.to(xa.dtype)
    g = gy if weight is None else gy * weight.to(xa.dtype)
    k_b = (g * normalized).sum(dim=-1, keepdim=True) * (1.0 / d)
    t = form_numerator(g, _direction(xa, normalized, scale, p), k_b)
    gx = (t / root[0] if root else t) / scale
    rows = tuple(range(gy.dim() - 1))
    gw = None if weight is None else (gy * normalized).sum(dim=rows).to(weight.dtype)
    gb = None if ctx.bias_dtype is None else gy.sum(dim=rows).to(ctx.bias_dtype)
    return gx.to(ctx.x_dtype), gw, gb, None, None


def _direction(xa: torch.Tensor, normalized: torch.Tensor, scale: torch.Tensor, p: float) -> torch.Tensor:
    """φ: the direction K_b multiplies (the gradient of the power mean's root, per entry)."""
    sign = torch.sign(xa)
    if math.isinf(p):
        top = xa.abs().amax(dim=-1, keepdim=True)
        at_max = (xa.abs() == top) & (top >= scale) & (top > 0)
        ties = at_max.sum(dim=-1, keepdim=True).clamp(min=1).to(xa.dtype)
        return torch.where(at_max, sign * (xa.shape[-1] / ties), torch.zeros_like(xa))
    if p == 1:
        return sign
    if p == 2:
        return normalized
    return sign * normalized.abs() ** (p - 1.0)
