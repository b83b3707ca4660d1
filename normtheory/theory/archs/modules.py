"""The architectures as torch modules: an `ArchStack` holds one model's weights and runs the
blocks of archs/blocks.py (the same code as the Monte Carlo harness), lists its normaliser
sites, and says whether the Pre-LN -> Pre-RMSNorm conversion applies to it.

Normalisers as certifiable kernels: every site whose op is a registered normaliser
(layernorm, rmsnorm) is computed by a module-level function with the kernel signature
`fn(x, weight, bias, eps) -> y`, so `normtheory certify normtheory.theory.archs.modules:NAME
--op OP` certifies exactly what the architecture runs. nGPT's x/||x|| (RMSNorm / sqrt(d)
without eps) and LayerNorm Scaling's scaled output are not registered ops; they are listed
with op None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from normtheory.theory import archs as A
from normtheory.theory.archs import blocks as B
from normtheory.theory.meanfield import constants as C


def qk_rms_norm(x, weight, bias, eps):
    """QK-Norm and HybridNorm's q/k/v site: RMSNorm over the head width."""
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def residual_layer_norm(x, weight, bias, eps):
    """Pre-LN / Post-LN / Peri-LN / Mix-LN / NormFormer residual and post-attention sites."""
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def residual_rms_norm(x, weight, bias, eps):
    """Pre-RMSNorm, QK-Norm's and HybridNorm's residual sites."""
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def normformer_ffn_layer_norm(x, weight, bias, eps):
    """NormFormer's mid-FFN LayerNorm, over the d_ff-wide activation."""
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


@dataclass(frozen=True)
class NormSite:
    where: str  # e.g. "block input", "q and k per head"
    op: str | None  # registry op (layernorm, rmsnorm) or None
    width: str  # "d", "d_head", "d_ff"
    kernel: str | None  # module:callable for `normtheory certify`


_MODULE = "normtheory.theory.archs.modules"
_LN_RES = NormSite("residual", "layernorm", "d", f"{_MODULE}:residual_layer_norm")
_RMS_RES = NormSite("residual", "rmsnorm", "d", f"{_MODULE}:residual_rms_norm")
_QK = NormSite("q and k per head", "rmsnorm", "d_head", f"{_MODULE}:qk_rms_norm")
NORM_SITES: dict[str, tuple[NormSite, ...]] = {
    "post_ln": (_LN_RES,), "pre_ln": (_LN_RES,), "peri_ln": (_LN_RES,), "mix_ln": (_LN_RES,),
    "pre_rms": (_RMS_RES,), "qk_norm": (_RMS_RES, _QK),
    "lns": (NormSite("residual, scaled by 1/sqrt(l)", None, "d", f"{_MODULE}:residual_layer_norm"),),
    "hybrid_norm": (_RMS_RES, NormSite("q, k and v per head", "rmsnorm", "d_head", f"{_MODULE}:qk_rms_norm")),
    "normformer": (_LN_RES, NormSite("after attention", "layernorm", "d", f"{_MODULE}:residual_layer_norm"),
                   NormSite("inside the FFN", "layernorm", "d_ff", f"{_MODULE}:normformer_ffn_layer_norm")),
    "ngpt": (NormSite("hidden state, branch outputs, q and k: x/||x||", None, "d", None),),
}

# Whether Jiang et al.'s Pre-LN -> Pre-RMSNorm conversion (theory/equivalence) applies.
CONVERSION = {
    "pre_ln": None,
    "qk_norm": None,  # QK-norm reads q and k, not the residual stream: the stream's LNs convert as usual
    "lns": None,  # 1/sqrt(l) is a scale on the LN output: it folds into the reader like gamma
    "pre_rms": "already RMSNorm",
    "post_ln": "Post-LN: branches read the un-normalised stream, which cannot be recentred",
    "mix_ln": "its first floor(L/4) blocks are Post-LN",
    "peri_ln": "the output LN's gamma (x) LN(F) + beta is written into the stream: not zero-mean for non-constant gamma",
    "normformer": "the post-attention LN's gamma (x) LN(a) + beta is written into the stream: not zero-mean",
    "hybrid_norm": "Post-Norm FFN: the FFN reads y = N(h + Attn), and the stream is y + FFN(y), not recentrable",
    "ngpt": "no LayerNorm to convert: the stream itself lives on the sphere",
}


def conversion_refusal(arch: str) -> str | None:
    """None when the Pre-LN -> Pre-RMSNorm conversion applies, else the reason it does not."""
    return CONVERSION[arch]


class ArchStack(nn.Module):
    """One model of `arch` (setup's shapes, Xavier-normal weights) on inputs of width d."""

    def __init__(self, arch: str, setup: str, d: int, depth: int, *, seed: int = 0, dtype=torch.float32):
        super().__init__()
        A.check_arch(arch, setup)
        self.arch, self.setup, self.d, self.depth = arch, setup, d, depth
        d_ff = C.d_ff(setup, d)
        shapes = {"wv": (d, d), "w1": (d, d_ff), "w2": (d_ff, d)}
        if setup == "standard":
            shapes = {"wq": (d, d), "wk": (d, d), "wo": (d, d), **shapes}
        gen = torch.Generator().manual_seed(seed)
        self.layers = nn.ModuleList()
        for _ in range(depth):
            layer = nn.ParameterDict()
            for name, (fan_in, fan_out) in shapes.items():
                w = torch.randn(1, fan_in, fan_out, generator=gen, dtype=dtype) * math.sqrt(2.0 / (fan_in + fan_out))
                layer[name] = nn.Parameter(w)
            self.layers.append(layer)

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        """h0: (n, d) tokens -> (n, d) model output (the final normaliser applied)."""
        ctx = B.BlockContext(setup=self.setup, arch=self.arch, eps=C.eps(self.setup, self.arch),
                             n_heads=C.n_heads(self.d), depth=self.depth)
        block = B.block_of(self.arch)
        h = B.embed(self.arch, h0[None])
        for index, layer in enumerate(self.layers):
            if not isinstance(layer, nn.ParameterDict):  # ModuleList yields Modules; __init__ stores ParameterDicts
                raise TypeError(f"layer {index} is a {type(layer).__name__}, not a ParameterDict of weights")
            w = dict(layer.items())
            h = block(h, B.ngpt_weights(w) if self.arch == "ngpt" else w, index + 1, ctx)
        return B.output(self.arch, h, ctx.eps, self.depth)[0]

    def norm_sites(self) -> tuple[NormSite, ...]:
        return NORM_SITES[self.arch]
