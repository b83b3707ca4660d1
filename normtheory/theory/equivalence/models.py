"""normtheory's reference decoder: one torch module for Pre-LN, Pre-RMSNorm and Pre-CRMSNorm.

The same class holds the original Pre-LN model and its converted forms, so the converters in
`equivalence/convert.py` only rewrite a state dict. Parameter names (nn.Linear layout, (out, in)):

    tok_emb.weight (V, r)      pos_emb.weight (T, r)
    blocks.i.norm1.{weight,bias}            only for a LayerNorm with affine
    blocks.i.attn_in.{weight,bias} (3d, r)  blocks.i.attn_out.{weight,bias} (r, d)
    blocks.i.norm2.{weight,bias}
    blocks.i.fc_in.{weight,bias} (f, r)     blocks.i.fc_out.{weight,bias} (r, f)
    norm_f.{weight,bias}       head.weight (V, r), head.bias (V) when head_bias

r is the residual width: d for LayerNorm and RMSNorm, d - 1 for CRMSNorm (the paper stores
a zero-mean d-vector by its first d - 1 coordinates). Attention always works in width d.

Every stored intermediate goes through `self.ops` (`ExactOps` by default), so the rounding
error model in `equivalence/noise.py` can inject the errors of a low-precision run at the
places where such a run rounds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NORM_KINDS = ("layernorm", "rmsnorm", "crmsnorm")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu")


@dataclass(frozen=True)
class DecoderConfig:
    vocab: int = 64
    d: int = 32
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int | None = None  # default 4 d
    max_len: int = 16
    activation: str = "gelu"
    norm: str = "layernorm"
    norm_affine: bool = True  # LayerNorm γ, β (only LayerNorm models carry them)
    head_bias: bool = False
    tie_head: bool = False  # head.weight shares tok_emb.weight (GPT-2 style); only for r = d
    eps: float = 1e-5
    placement: str = "pre"  # "post" exists so that the converter can refuse it
    dropout: float = 0.0  # at branch ends and on the embeddings (the converter refuses > 0)
    qk_norm: bool = False  # RMSNorm (no affine) of q and k per head before the scores (QK-Norm)

    def __post_init__(self):
        if self.norm not in NORM_KINDS:
            raise ValueError(f"norm must be one of {NORM_KINDS}, got {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.d % self.n_heads:
            raise ValueError(f"d={self.d} is not divisible by n_heads={self.n_heads}")
        if self.placement not in ("pre", "post"):
            raise ValueError(f"placement must be 'pre' or 'post', got {self.placement!r}")
        if self.d < 2:
            raise ValueError("d must be at least 2")

    @property
    def ff(self) -> int:
        return self.d_ff if self.d_ff is not None else 4 * self.d

    @property
    def residual_width(self) -> int:
        return self.d - 1 if self.norm == "crmsnorm" else self.d

    @property
    def has_norm_params(self) -> bool:
        return self.norm == "layernorm" and self.norm_affine

    def replace(self, **changes) -> DecoderConfig:
        return dataclasses.replace(self, **changes)


class ExactOps:
    """No rounding model: every hook is the identity and matmul is torch's."""

    def store(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    def norm(self, normalise, x: torch.Tensor, kind: str, d: int, eps: float) -> torch.Tensor:
        return normalise(x)


def crms_norm(z: torch.Tensor, d: int, eps: float) -> torch.Tensor:
    """CRMSNorm(z) = z / sqrt((Σz² + (Σz)²)/d + ε), z holding d - 1 coordinates of a zero-mean
    d-vector; statistics in at least fp32 like torch's own norm kernels."""
    acc = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
    s = acc.sum(-1, keepdim=True)
    mean_square = (acc.pow(2).sum(-1, keepdim=True) + s * s) / d
    return (acc * torch.rsqrt(mean_square + eps)).to(z.dtype)


class Norm(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.kind, self.eps, self.d, self.width = cfg.norm, cfg.eps, cfg.d, cfg.residual_width
        self.weight: nn.Parameter | None
        self.bias: nn.Parameter | None
        if cfg.has_norm_params:
            self.weight = nn.Parameter(torch.ones(self.width))
            self.bias = nn.Parameter(torch.zeros(self.width))
        else:
            self.weight = self.bias = None

    def forward(self, x: torch.Tensor, ops) -> torch.Tensor:
        return ops.store(ops.norm(self._normalise, x, self.kind, self.d, self.eps))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layernorm":
            return F.layer_norm(x, (self.width,), self.weight, self.bias, self.eps)
        if self.kind == "rmsnorm":
            return F.rms_norm(x, (self.width,), None, self.eps)
        return crms_norm(x, self.d, self.eps)


def _linear(ops, x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    flat = x.reshape(-1, x.shape[-1])
    y = ops.matmul(flat, layer.weight.t())
    if layer.bias is not None:
        if isinstance(ops, ExactOps):
            y = y + layer.bias
        else:  # written as a matmul with a ones column so the bias gradient's row sum is modelled
            ones = torch.ones(flat.shape[0], 1, dtype=flat.dtype, device=flat.device)
            y = ops.store(y + ops.matmul(ones, layer.bias[None, :]))
    return y.reshape(*x.shape[:-1], y.shape[-1])


def _activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return F.relu(x)
    return F.gelu(x, approximate="tanh" if name == "gelu_tanh" else "none")


class Block(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        r, d = cfg.residual_width, cfg.d
        self.cfg = cfg
        self.norm1 = Norm(cfg)
        self.attn_in = nn.Linear(r, 3 * d)
        self.attn_out = nn.Linear(d, r)
        self.norm2 = Norm(cfg)
        self.fc_in = nn.Linear(r, cfg.ff)
        self.fc_out = nn.Linear(cfg.ff, r)
        self.drop = nn.Dropout(cfg.dropout)

    def attention(self, h: torch.Tensor, ops) -> torch.Tensor:
        cfg = self.cfg
        batch, length, _ = h.shape
        head_dim = cfg.d // cfg.n_heads
        qkv = _linear(ops, h, self.attn_in).view(batch, length, 3, cfg.n_heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if cfg.qk_norm:  # reads q and k, never the residual stream: the conversion leaves it as is
            def qk(t):
                return F.rms_norm(t, (head_dim,), None, cfg.eps)
            q = ops.store(ops.norm(qk, q, "rmsnorm", head_dim, cfg.eps))
            k = ops.store(ops.norm(qk, k, "rmsnorm", head_dim, cfg.eps))
        if isinstance(ops, ExactOps):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # spelled out so that each rounding site is visible to the error model
            scores = ops.store(ops.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(head_dim)))
            mask = torch.ones(length, length, dtype=torch.bool, device=h.device).tril()
            probs = ops.store(torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1))
            out = ops.matmul(probs, v)
        out = out.transpose(1, 2).reshape(batch, length, cfg.d)
        return self.drop(_linear(ops, out, self.attn_out))

    def mlp(self, h: torch.Tensor, ops) -> torch.Tensor:
        hidden = ops.store(_activation(self.cfg.activation, _linear(ops, h, self.fc_in)))
        return self.drop(_linear(ops, hidden, self.fc_out))

    def forward(self, x: torch.Tensor, ops) -> torch.Tensor:
        if self.cfg.placement == "pre":
            x = ops.store(x + self.attention(self.norm1(x, ops), ops))
            return ops.store(x + self.mlp(self.norm2(x, ops), ops))
        x = self.norm1(ops.store(x + self.attention(x, ops)), ops)
        return self.norm2(ops.store(x + self.mlp(x, ops)), ops)


class PreNormDecoder(nn.Module):
    """A GPT-style decoder (learned positions, fused QKV, causal attention, 2-layer MLP)."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        if cfg.tie_head and cfg.norm == "crmsnorm":
            raise ValueError("a CRMSNorm model cannot tie its head to the (d-1)-wide embedding")
        self.cfg = cfg
        r = cfg.residual_width
        self.tok_emb = nn.Embedding(cfg.vocab, r)
        self.pos_emb = nn.Embedding(cfg.max_len, r)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm_f = Norm(cfg) if cfg.placement == "pre" else None
        self.head = nn.Linear(r, cfg.vocab, bias=cfg.head_bias)
        if cfg.tie_head:
            self.head.weight = self.tok_emb.weight
        self.ops = ExactOps()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        ops = self.ops
        positions = torch.arange(idx.shape[-1], device=idx.device)
        x = ops.store(self.tok_emb(idx) + self.pos_emb(positions))
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, ops)
        if self.norm_f is not None:
            x = self.norm_f(x, ops)
        return _linear(ops, x, self.head)


def random_decoder(cfg: DecoderConfig, seed: int, dtype=torch.float64) -> PreNormDecoder:
    """A decoder with every parameter random and O(1)-sized, so that the conversion is tested
    on non-trivial LayerNorm affines and biases (a fresh nn.LayerNorm has γ = 1, β = 0, which
    would leave the folding untested)."""
    gen = torch.Generator().manual_seed(seed)
    model = PreNormDecoder(cfg).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("norm_f.weight"):
                value = 1.0 + 0.2 * noise
            elif name.endswith("bias"):
                value = 0.1 * noise
            elif "emb" in name:
                # a non-zero mean per row, as trained embeddings have, so recentring matters
                value = 0.5 * noise + 0.3 * torch.randn(p.shape[0], 1, generator=gen, dtype=torch.float64)
            else:
                value = noise / math.sqrt(p.shape[-1])
            p.copy_(value.to(dtype))
    return model.eval()
