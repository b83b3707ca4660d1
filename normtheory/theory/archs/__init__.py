"""Transformer normalisation architectures at initialisation: what each one is, where it comes
from, and which setups the mean-field harness builds it in (no torch here; the blocks are in
archs/blocks.py, the nn.Module form in archs/modules.py, the derived predictions in
archs/derivations.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

LP_ARCH_PREFIX = "pre_lp:"


@dataclass(frozen=True)
class ArchSpec:
    name: str
    source: str  # paper, arXiv id
    definition: str  # the block, in formulas (what the harness builds)
    setups: tuple[str, ...] = ("xiong", "standard")
    prefix: bool = True  # the depth-L model is the first L blocks of the deepest one
    softmax_only: bool = False  # needs softmax attention (the standard setup)


_BOTH = ("xiong", "standard")
ARCH_SPECS: dict[str, ArchSpec] = {spec.name: spec for spec in (
    ArchSpec("post_ln", "Vaswani et al. 2017; Xiong et al. 2020, arXiv 2002.04745",
             "h <- LN(h + Attn(h)); h <- LN(h + FFN(h))"),
    ArchSpec("pre_ln", "Xiong et al. 2020, arXiv 2002.04745",
             "h <- h + Attn(LN(h)); h <- h + FFN(LN(h)); output LN(h_L)"),
    ArchSpec("peri_ln", "Kim et al. 2025 (Peri-LN), arXiv 2502.02732",
             "h <- h + LN(Attn(LN(h))); h <- h + LN(FFN(LN(h)))"),
    ArchSpec("lns", "Sun et al. 2025 (Curse of Depth, LayerNorm Scaling), arXiv 2502.05795",
             "Pre-LN with every LN output of block l multiplied by 1/sqrt(l)"),
    ArchSpec("pre_rms", "Zhang & Sennrich 2019 (RMSNorm) in a Pre-LN stack",
             "Pre-LN with RMSNorm"),
    ArchSpec("mix_ln", "Li et al. 2024 (Mix-LN), arXiv 2412.13795",
             "Post-LN blocks for the first floor(0.25 L) layers, Pre-LN blocks after, output LN",
             prefix=False),
    ArchSpec("hybrid_norm", "Zhuo et al. 2025 (HybridNorm), arXiv 2503.04598",
             "h' = h + W_O Attn(N(h W_Q), N(h W_K), N(h W_V)) (N: RMSNorm per head); "
             "y = N(h'); h <- y + FFN(y); output N(h_L)"),
    ArchSpec("normformer", "Shleifer et al. 2021 (NormFormer), arXiv 2110.09456",
             "h <- h + LN(HeadScale(Attn(LN(h)))); h <- h + W2 LN(act(W1 LN(h))); head scales 1"),
    ArchSpec("ngpt", "Loshchilov et al. 2024 (nGPT), arXiv 2410.01131",
             "h unit-norm; h <- Norm(h + a (Norm(Attn(h)) - h)); h <- Norm(h + a (Norm(MLP(h)) - h)); "
             "a = 0.05; weights unit-norm along the embedding axis; q, k unit-norm, logits sqrt(d_k) q.k",
             setups=("standard",), softmax_only=True),
    ArchSpec("qk_norm", "Henry et al. 2020 (QK-Norm), arXiv 2010.04245; as used with RMSNorm in "
             "Dehghani et al. 2023 (ViT-22B) and OLMo 2",
             "Pre-RMSNorm with q <- RMSNorm(q), k <- RMSNorm(k) per head before q.k / sqrt(d_k)",
             setups=("standard",), softmax_only=True),
)}
ARCHS = tuple(ARCH_SPECS)
ORIGINAL_ARCHS = ("post_ln", "pre_ln", "peri_ln", "lns", "pre_rms")


def lp_arch(p: float) -> str:
    """The arch name of a Pre-Lp stack: pre_lp:1.5, pre_lp:inf, ..."""
    return LP_ARCH_PREFIX + ("inf" if math.isinf(p) else f"{float(p):g}")


def lp_exponent(arch: str) -> float | None:
    """p of a pre_lp:P arch, None for every other arch (ValueError for a bad P)."""
    if not arch.startswith(LP_ARCH_PREFIX):
        return None
    p = float(arch[len(LP_ARCH_PREFIX):])
    if not p >= 1:
        raise ValueError(f"{arch!r}: p must be >= 1 or inf")
    return p


def check_arch(arch: str, setup: str | None = None) -> None:
    """ValueError with the reason when `arch` is unknown or cannot be built in `setup`."""
    if arch not in ARCH_SPECS and lp_exponent(arch) is None:
        raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS} or {LP_ARCH_PREFIX}P")
    spec = ARCH_SPECS.get(arch)
    if setup is not None and spec is not None and setup not in spec.setups:
        raise ValueError(f"{arch} needs softmax attention: use the standard setup, not {setup}")


def is_prefix(arch: str) -> bool:
    spec = ARCH_SPECS.get(arch)
    return True if spec is None else spec.prefix


def mix_ln_post_layers(depth: int, fraction: float) -> int:
    """Mix-LN: the number of Post-LN layers of a depth-`depth` model (floor(fraction * depth))."""
    return int(math.floor(fraction * depth))
