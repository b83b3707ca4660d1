"""The blocks of every architecture, on seed-batched weights (torch).

Weights are tensors of shape (S, fan_in, fan_out) (one model per seed S, `x @ W`
convention), activations (S, n, d). The Monte Carlo harness (meanfield/montecarlo.py) and the
nn.Module form (archs/modules.py) both run these functions, so there is one implementation
of each block. Definitions and sources: normtheory/theory/archs/__init__.py.

`BlockContext` carries what a block needs besides its weights (setup, eps, heads, the model's
depth for Mix-LN) and a `BlockTrace` that collects the per-layer statistics the mean-field
claims read: FFN activation mean squares, Post-LN's residual sums, and, for softmax
attention, the largest |logit| and the mean softmax entropy of each layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from normtheory.theory.archs import lp_exponent, mix_ln_post_layers
from normtheory.theory.meanfield import constants as C

Weights = dict[str, torch.Tensor]


def sum_of_squares(t: torch.Tensor, dims) -> torch.Tensor:
    """Sum of squares over dims. torch's fp32 norm reduces in blocks (relative error ~1e-6 at
    these sizes, far below the Monte Carlo error) and is 20x faster than a float64 copy."""
    return torch.linalg.vector_norm(t.detach(), dim=dims).double().square()


def mean_square(t: torch.Tensor) -> torch.Tensor:
    """Per seed: mean over tokens of ||t_i||^2 / width."""
    return sum_of_squares(t, (-1, -2)) / (t.shape[-1] * t.shape[-2])


@dataclass
class BlockTrace:
    """Per-layer statistics, each a list over blocks of (S,) tensors."""

    activation_ms: list[torch.Tensor] = field(default_factory=list)  # mean ||act||^2 / d_ff
    residual_sum_ms: list[torch.Tensor] = field(default_factory=list)  # post-norm: x + FFN(x) before its norm
    attention_sum_ms: list[torch.Tensor] = field(default_factory=list)  # post-norm: x + Attn(x) before its norm
    logit_max: list[torch.Tensor] = field(default_factory=list)  # max |q.k scale| over heads, tokens
    entropy: list[torch.Tensor] = field(default_factory=list)  # mean softmax entropy (nats)


@dataclass
class BlockContext:
    setup: str
    arch: str
    eps: float
    n_heads: int
    activation: str = "relu"
    depth: int = 0  # the model's depth (Mix-LN switches at floor(0.25 depth))
    trace: BlockTrace = field(default_factory=BlockTrace)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) if self.activation == "relu" else F.gelu(x)


# ---------------------------------------------------------------- normalisers


def normalise(x: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """ln (LayerNorm), rms (RMSNorm), unit (x / ||x||, nGPT), or pre_lp:P (stable Lp kernel)."""
    p = lp_exponent(kind)  # None unless kind is pre_lp:P
    if p is not None:
        from normtheory.kernels.lp import lp_norm_stable

        return lp_norm_stable(x, None, None, eps, p)
    if kind == "rms":
        return F.rms_norm(x, (x.shape[-1],), eps=eps)
    if kind == "unit":
        return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-30)
    return F.layer_norm(x, (x.shape[-1],), eps=eps)



def residual_norm_kind(arch: str) -> str:
    if arch in C.RMS_FAMILY:
        return "unit" if arch == "ngpt" else "rms"
    return arch if lp_exponent(arch) is not None else "ln"


# ---------------------------------------------------------------- attention and FFN


def uniform_attention(x: torch.Tensor, wv: torch.Tensor, v_norm: Callable | None = None) -> torch.Tensor:
    """Attention with W^Q = W^K = 0: softmax of zeros is uniform, so every token gets the mean
    of the values. (tests check this equals softmax attention with zero W^Q, W^K.)"""
    v = torch.bmm(x, wv)
    if v_norm is not None:
        v = v_norm(v)
    return v.mean(dim=1, keepdim=True).expand_as(v)


def _record_logits(ctx: BlockContext, q: torch.Tensor, k: torch.Tensor, scale: float) -> None:
    """Largest |logit| and mean softmax entropy of one layer (detached; no mask)."""
    with torch.no_grad():
        logits = torch.matmul(q, k.transpose(-1, -2)) * scale  # (S, heads, n, n)
        ctx.trace.logit_max.append(logits.abs().amax(dim=(1, 2, 3)).double())
        log_p = torch.log_softmax(logits.double(), dim=-1)
        ctx.trace.entropy.append(-(log_p.exp() * log_p).sum(-1).mean(dim=(1, 2)))


def softmax_attention(x: torch.Tensor, w: Weights, ctx: BlockContext, *, qk_norm: bool = False,
                      v_norm: bool = False, unit_qk: bool = False, head_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head softmax attention (no mask) with optional per-head normalisation of q, k
    (RMSNorm, or unit norm with the sqrt(d_k) logit scale of nGPT), of v, and NormFormer's
    head-wise output scales."""
    S, n, d = x.shape
    dh = d // ctx.n_heads

    def heads(t):
        return t.view(S, n, ctx.n_heads, dh).transpose(1, 2)

    q, k, v = (heads(torch.bmm(x, w[name])) for name in ("wq", "wk", "wv"))
    scale = 1.0 / math.sqrt(dh)
    if qk_norm:
        q, k = normalise(q, "rms", ctx.eps), normalise(k, "rms", ctx.eps)
    if unit_qk:
        q, k, scale = normalise(q, "unit", 0.0), normalise(k, "unit", 0.0), math.sqrt(dh)
    if v_norm:
        v = normalise(v, "rms", ctx.eps)
    _record_logits(ctx, q, k, scale)
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    if head_scale is not None:
        out = out * head_scale.view(1, ctx.n_heads, 1, 1)
    return torch.bmm(out.transpose(1, 2).reshape(S, n, d), w["wo"])


def attention(x: torch.Tensor, w: Weights, ctx: BlockContext, **options) -> torch.Tensor:
    if ctx.setup == "xiong":
        v_norm = (lambda v: normalise(v, "rms", ctx.eps)) if options.get("v_norm") else None
        return uniform_attention(x, w["wv"], v_norm)
    return softmax_attention(x, w, ctx, **options)


def ffn(x: torch.Tensor, w: Weights, ctx: BlockContext, *, mid_norm: bool = False, in_gain: float = 1.0) -> torch.Tensor:
    a = ctx.act(torch.bmm(x, w["w1"]) * in_gain)
    ctx.trace.activation_ms.append(mean_square(a))
    if mid_norm:  # NormFormer: LayerNorm of the d_ff-wide activation
        a = normalise(a, "ln", ctx.eps)
    return torch.bmm(a, w["w2"])


# ---------------------------------------------------------------- blocks


def post_ln_block(h, w, layer, ctx):
    s = h + attention(h, w, ctx)
    ctx.trace.attention_sum_ms.append(mean_square(s))
    h = normalise(s, "ln", ctx.eps)
    s = h + ffn(h, w, ctx)
    ctx.trace.residual_sum_ms.append(mean_square(s))
    return normalise(s, "ln", ctx.eps)


def pre_block(h, w, layer, ctx):
    """Pre-LN, Pre-RMSNorm, Pre-Lp, LayerNorm Scaling (scale 1/sqrt(l)) and QK-Norm."""
    kind = residual_norm_kind(ctx.arch)
    scale = 1.0 / math.sqrt(layer) if ctx.arch == "lns" else 1.0
    options = {"qk_norm": True} if ctx.arch == "qk_norm" else {}
    h = h + attention(normalise(h, kind, ctx.eps) * scale, w, ctx, **options)
    return h + ffn(normalise(h, kind, ctx.eps) * scale, w, ctx)


def peri_ln_block(h, w, layer, ctx):
    h = h + normalise(attention(normalise(h, "ln", ctx.eps), w, ctx), "ln", ctx.eps)
    return h + normalise(ffn(normalise(h, "ln", ctx.eps), w, ctx), "ln", ctx.eps)


def mix_ln_block(h, w, layer, ctx):
    if layer <= mix_ln_post_layers(ctx.depth, C.MIX_LN_POST_FRACTION):
        return post_ln_block(h, w, layer, ctx)
    return pre_block(h, w, layer, ctx)


def hybrid_norm_block(h, w, layer, ctx):
    s = h + attention(h, w, ctx, qk_norm=True, v_norm=True)
    ctx.trace.attention_sum_ms.append(mean_square(s))
    y = normalise(s, "rms", ctx.eps)
    out = y + ffn(y, w, ctx)
    ctx.trace.residual_sum_ms.append(mean_square(out))
    return out


def normformer_block(h, w, layer, ctx):
    head_scale = None
    if ctx.setup == "standard":
        head_scale = torch.full((ctx.n_heads,), C.NORMFORMER_HEAD_SCALE_INIT, dtype=h.dtype, device=h.device)
    h = h + normalise(attention(normalise(h, "ln", ctx.eps), w, ctx, head_scale=head_scale), "ln", ctx.eps)
    return h + ffn(normalise(h, "ln", ctx.eps), w, ctx, mid_norm=True)


def ngpt_block(h, w, layer, ctx):
    """nGPT at initialisation: weights unit-norm along the embedding axis (`ngpt_weights`),
    q and k unit-norm with logit scale sqrt(d_k), the FFN input scaled by sqrt(d) (the paper's
    s_nu sqrt(d_model) with s_nu = 1), each branch output normalised, then a step of size alpha
    towards it and a retraction to the sphere."""
    alpha = C.NGPT_ALPHA_INIT
    branch = normalise(attention(h, w, ctx, unit_qk=True), "unit", 0.0)
    h = normalise(h + alpha * (branch - h), "unit", 0.0)
    branch = normalise(ffn(h, w, ctx, in_gain=math.sqrt(h.shape[-1])), "unit", 0.0)
    return normalise(h + alpha * (branch - h), "unit", 0.0)


def ngpt_weights(layer: Weights) -> Weights:
    """Unit-norm rows along the embedding axis: input matrices (d -> out) by column, output
    matrices (in -> d) by row. Differentiable, so gradients flow to the raw draws."""
    out = {}
    for name, wt in layer.items():
        axis = -1 if name in ("wo", "w2") else -2
        out[name] = wt / torch.linalg.vector_norm(wt, dim=axis, keepdim=True)
    return out


BLOCKS: dict[str, Callable] = {
    "post_ln": post_ln_block, "pre_ln": pre_block, "pre_rms": pre_block, "lns": pre_block,
    "qk_norm": pre_block, "peri_ln": peri_ln_block, "mix_ln": mix_ln_block,
    "hybrid_norm": hybrid_norm_block, "normformer": normformer_block, "ngpt": ngpt_block,
}


def block_of(arch: str) -> Callable:
    return pre_block if lp_exponent(arch) is not None else BLOCKS[arch]


def embed(arch: str, h0: torch.Tensor) -> torch.Tensor:
    """nGPT puts its input on the unit sphere; every other arch reads h0 as drawn."""
    return normalise(h0, "unit", 0.0) if arch == "ngpt" else h0


def output(arch: str, h_last: torch.Tensor, eps: float, depth: int) -> torch.Tensor:
    """The model output the loss reads: Post-LN's last block already ends in LN (and so does
    Mix-LN when all its layers are Post-LN); nGPT's state is already on the sphere; every
    other arch applies its final normaliser."""
    if arch == "post_ln" or arch == "ngpt":
        return h_last
    if arch == "mix_ln" and mix_ln_post_layers(depth, C.MIX_LN_POST_FRACTION) >= depth:
        return h_last
    kind = "rms" if arch == "hybrid_norm" else residual_norm_kind(arch)
    return normalise(h_last, kind, eps)
