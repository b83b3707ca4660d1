"""A tiny decoder-only Transformer whose only variable is where the LayerNorms sit.

Placements (x is the residual stream, F a sub-layer: causal self-attention or the MLP):

    pre_ln    x ← x + F(LN(x))                                   final LN before the head
    post_ln   x ← LN(x + F(x))                                    no final LN (the last op is an LN)
    peri_ln   x ← x + LN_out(F(LN_in(x)))                         final LN before the head
    mix_ln    post_ln in blocks 1 … ⌊αL⌋, pre_ln in the rest      final LN before the head
    lns       x ← x + F(LN(x) / √l) in block l = 1 … L            final LN (unscaled)

Sources: Xiong et al. 2020 (pre/post), Kim et al. 2025 "Peri-LN" (LN on the input and on the
output of each sub-layer, before the residual addition), Li et al. 2024 "Mix-LN" (Post-LN in the
first ⌊αL⌋ layers, α = 0.25 by default), Sun et al. 2025 "The Curse of Depth" (LayerNorm Scaling:
the LN output of layer l times 1/√l). What we took from each paper is in docs/trained_claims.md.

Initialisation is the GPT-2 one without its residual rescaling (every weight N(0, 0.02²), biases
and LN β zero, LN γ one): the Curse of Depth paper recommends LNS without scaled initialisation,
and using the same init for every placement keeps the placement the only difference. Parameters
are created in the same order for every placement, so the same seed gives the same weights
wherever two placements share a parameter (peri_ln only adds LayerNorms, whose init is fixed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PLACEMENTS = ("pre_ln", "post_ln", "peri_ln", "mix_ln", "lns")
INIT_STD = 0.02


@dataclass(frozen=True)
class ModelConfig:
    vocab: int = 32
    seq_len: int = 64
    d: int = 64
    n_layers: int = 6
    n_heads: int = 4
    placement: str = "pre_ln"
    mix_alpha: float = 0.25  # Mix-LN: share of Post-LN blocks at the bottom of the stack

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement {self.placement!r} is not one of {PLACEMENTS}")
        if self.d % self.n_heads:
            raise ValueError(f"d = {self.d} is not divisible by n_heads = {self.n_heads}")

    def block_kinds(self) -> list[str]:
        """Per block: 'pre', 'post' or 'peri'."""
        if self.placement == "mix_ln":
            n_post = math.floor(self.mix_alpha * self.n_layers)
            return ["post"] * n_post + ["pre"] * (self.n_layers - n_post)
        kind = {"pre_ln": "pre", "lns": "pre", "post_ln": "post", "peri_ln": "peri"}[self.placement]
        return [kind] * self.n_layers

    def input_scale(self, layer: int) -> float:
        """The factor on the LN output entering block `layer` (0-based): 1/√(layer+1) for LNS."""
        return 1.0 / math.sqrt(layer + 1) if self.placement == "lns" else 1.0


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        shape = (b, t, self.n_heads, d // self.n_heads)
        q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))
        # fused causal attention: the same maths as softmax(q kᵀ/√d_h + causal mask) v, and
        # deterministic on the CPU
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc_in = nn.Linear(d, 4 * d)
        self.fc_out = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(F.gelu(self.fc_in(x)))


class Block(nn.Module):
    """One Transformer block: attention then MLP, each wrapped by the block's placement."""

    def __init__(self, d: int, n_heads: int, kind: str, input_scale: float):
        super().__init__()
        self.kind = kind
        self.input_scale = input_scale
        self.attn = CausalSelfAttention(d, n_heads)
        self.mlp = MLP(d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        if kind == "peri":
            self.norm1_out = nn.LayerNorm(d)
            self.norm2_out = nn.LayerNorm(d)

    def _sublayer(self, x, sublayer, norm_in, norm_out):
        if self.kind == "post":
            return norm_in(x + sublayer(x))
        branch = sublayer(norm_in(x) * self.input_scale)
        return x + (norm_out(branch) if norm_out is not None else branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        peri = self.kind == "peri"
        x = self._sublayer(x, self.attn, self.norm1, self.norm1_out if peri else None)
        return self._sublayer(x, self.mlp, self.norm2, self.norm2_out if peri else None)


class TinyDecoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab, config.d)
        self.pos_emb = nn.Embedding(config.seq_len, config.d)
        self.blocks = nn.ModuleList(
            Block(config.d, config.n_heads, kind, config.input_scale(i)) for i, kind in enumerate(config.block_kinds()))
        # Post-LN's last operation is already a LayerNorm; every other placement ends on a raw
        # residual sum and needs one before the head
        self.norm_f = None if config.placement == "post_ln" else nn.LayerNorm(config.d)
        self.head = nn.Linear(config.d, config.vocab, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor, *, skip_block: int | None = None,
                hidden: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits (B, T, V). `skip_block`: replace that block by the identity (layer removal).
        `hidden`: if a list is given, the residual stream x_0 (embeddings) … x_L is appended to it."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tok_emb(tokens) + self.pos_emb(positions)
        if hidden is not None:
            hidden.append(x)
        for i, block in enumerate(self.blocks):
            if i != skip_block:
                x = block(x)
            if hidden is not None:
                hidden.append(x)
        if self.norm_f is not None:
            x = self.norm_f(x)
        return self.head(x)
