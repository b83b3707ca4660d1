"""Pre-LN → Pre-RMSNorm / Pre-CRMSNorm for Hugging Face `GPT2LMHeadModel`.

The converted model is still a `GPT2LMHeadModel` (HF's own forward runs it): its LayerNorms
are swapped for parameter-free RMSNorm / CRMSNorm modules, the LM head is untied from wte and
gets a bias (ln_f's γ folded into its weight, β into the bias), wte and wpe are recentred,
and every Conv1D is rewritten in its (in, out) layout. For CRMSNorm the residual width is
d − 1: wte, wpe, c_attn (input side), attn.c_proj and mlp.c_proj (output side), c_fc and the
head are rebuilt with d − 1 where the stream enters. Attention keeps width d.

transformers is imported lazily by the callers (this module is only imported by code that
already needs it).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from normtheory.theory.equivalence.convert import Anatomy, ConversionRefused, NormSite, Reader, Writer, convert_state


def _known_module_types():
    from transformers.models.gpt2 import modeling_gpt2 as g
    from transformers.pytorch_utils import Conv1D

    return (
        g.GPT2LMHeadModel, g.GPT2Model, g.GPT2Block, g.GPT2Attention, g.GPT2MLP,
        Conv1D, nn.LayerNorm, nn.Embedding, nn.Dropout, nn.ModuleList, nn.Linear,
    )


def _is_activation(module: nn.Module) -> bool:
    # GPT-2's activation is a parameter-free module inside the MLP branch (not at its end).
    return type(module).__module__ in ("transformers.activations", "torch.nn.modules.activation") and not any(
        True for _ in module.parameters()
    )


def gpt2_anatomy(model, *, inference_only: bool = False) -> Anatomy:
    """Anatomy of an HF GPT2LMHeadModel, or `ConversionRefused` with the reason."""
    from transformers import GPT2LMHeadModel

    if not isinstance(model, GPT2LMHeadModel):
        raise ConversionRefused(f"expected a GPT2LMHeadModel, got {type(model).__name__}")
    cfg = model.config
    if getattr(cfg, "add_cross_attention", False):
        raise ConversionRefused("cross-attention blocks are not handled (their keys read the encoder, not the stream)")
    end_dropout = {"resid_pdrop": cfg.resid_pdrop, "embd_pdrop": cfg.embd_pdrop}
    active = {k: v for k, v in end_dropout.items() if v > 0}
    if active and not inference_only:
        raise ConversionRefused(
            f"dropout at branch ends / embeddings {active}: a dropped-out recentred vector is not zero-mean, "
            "so LN ≠ RMSNorm in training (build with 0 or convert with inference_only=True)"
        )
    known = _known_module_types()
    for name, module in model.named_modules():
        if not isinstance(module, known) and not _is_activation(module):
            raise ConversionRefused(f"unknown layer {name or '<root>'} of type {type(module).__name__}")
    if model.lm_head.weight.shape[1] != cfg.n_embd:
        raise ConversionRefused("the LM head does not read the d-wide stream")
    params = dict(model.named_parameters())
    tied = model.lm_head.weight is model.transformer.wte.weight
    t = "transformer."

    def ln(name: str) -> tuple[str | None, str | None]:
        """The names of a LayerNorm's weight and bias (None where it has none)."""
        module = model.get_submodule(name)
        weight = name + ".weight" if module.weight is not None else None
        bias = name + ".bias" if getattr(module, "bias", None) is not None else None
        return weight, bias

    writers = [Writer(t + "wte.weight", 1), Writer(t + "wpe.weight", 1)]
    norms = []
    for i in range(cfg.n_layer):
        p = f"{t}h.{i}."
        writers += [Writer(p + "attn.c_proj.weight", 1, p + "attn.c_proj.bias"),
                    Writer(p + "mlp.c_proj.weight", 1, p + "mlp.c_proj.bias")]
        for norm, reader in (("ln_1", "attn.c_attn"), ("ln_2", "mlp.c_fc")):
            weight, bias = p + reader + ".weight", p + reader + ".bias"
            norms.append(NormSite(*ln(p + norm), (Reader(weight, weight, 0, bias, bias),)))
    head_src = t + "wte.weight" if tied else "lm_head.weight"
    head_bias = "lm_head.bias" if "lm_head.bias" in params else None
    norms.append(NormSite(*ln(t + "ln_f"), (Reader(head_src, "lm_head.weight", 1, head_bias, "lm_head.bias"),)))
    return Anatomy(cfg.n_embd, tuple(writers), tuple(norms))


class CRMSNorm(nn.Module):
    """Parameter-free CRMSNorm over d − 1 stored coordinates of a zero-mean d-vector."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.d, self.eps = d, eps

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        from normtheory.theory.equivalence.models import crms_norm

        return crms_norm(z, self.d, self.eps)


def gpt2_skeleton(model, target: str):
    """A copy of `model` with the target's module shapes (its values are then loaded)."""
    from transformers.pytorch_utils import Conv1D

    cfg = model.config
    d, eps = cfg.n_embd, cfg.layer_norm_epsilon
    r = d - 1 if target == "crmsnorm" else d
    ref = next(model.parameters())
    skeleton = copy.deepcopy(model)
    skeleton.config.tie_word_embeddings = False
    for module in skeleton.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    for attr in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        setattr(skeleton.config, attr, 0.0)

    def norm():
        return nn.RMSNorm(r, eps=eps, elementwise_affine=False) if target == "rmsnorm" else CRMSNorm(d, eps)

    tr = skeleton.transformer
    for block in tr.h:
        block.ln_1, block.ln_2 = norm(), norm()
        if target == "crmsnorm":
            block.attn.c_attn = Conv1D(block.attn.c_attn.nf, r)
            block.attn.c_proj = Conv1D(r, block.attn.c_proj.nx)
            block.mlp.c_fc = Conv1D(block.mlp.c_fc.nf, r)
            block.mlp.c_proj = Conv1D(r, block.mlp.c_proj.nx)
    tr.ln_f = norm()
    if target == "crmsnorm":
        tr.wte = nn.Embedding(cfg.vocab_size, r)
        tr.wpe = nn.Embedding(cfg.n_positions, r)
    skeleton.lm_head = nn.Linear(r, cfg.vocab_size, bias=True)
    return skeleton.to(dtype=ref.dtype, device=ref.device)


def gpt2_params(model) -> dict[str, torch.Tensor]:
    return dict(model.named_parameters())


def convert_gpt2(model, target: str, *, inference_only: bool = False, skip_recentre: frozenset[str] = frozenset()):
    """A new GPT2LMHeadModel with `target` norms computing the same function as `model` (which
    is left untouched)."""
    anatomy = gpt2_anatomy(model, inference_only=inference_only)
    converted = gpt2_skeleton(model, target)
    with torch.no_grad():
        state = convert_state(gpt2_params(model), anatomy, target, skip_recentre=skip_recentre)
        if "lm_head.bias" not in state:  # no affine on ln_f and no head bias: a zero bias
            state["lm_head.bias"] = torch.zeros_like(converted.lm_head.bias)
        converted.load_state_dict(state, strict=True)
    return converted.eval()


def random_gpt2(*, d: int = 32, n_layer: int = 2, n_head: int = 4, vocab: int = 64, n_positions: int = 16,
                seed: int = 0, dtype=torch.float64, activation: str = "gelu_new", **config_overrides):
    """A GPT2LMHeadModel from a GPT2Config, random weights, every dropout 0 unless overridden
    (no download).

    HF initialises LayerNorm to γ = 1, β = 0 and every bias to 0, which would leave the folding
    of γ and β untested; these are drawn at random here, as in a trained model.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    # Any: each of GPT2Config's keyword arguments has its own type, and an override may be any of them
    settings: dict[str, Any] = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    settings.update(config_overrides)
    config = GPT2Config(
        vocab_size=vocab, n_positions=n_positions, n_embd=d, n_layer=n_layer, n_head=n_head,
        activation_function=activation, **settings,
    )
    torch.manual_seed(seed)  # HF's own init draws from the global generator
    model = GPT2LMHeadModel(config)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if ".ln_" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif name.endswith("wte.weight") or name.endswith("wpe.weight"):
                p.add_(0.1 * torch.randn(p.shape[0], 1, generator=gen))  # non-zero row means
    return model.to(dtype).eval()


# -------------------------------------------------- the same GPT-2 as a reference decoder
# The rounding-error model (equivalence/noise.py) is evaluated on normtheory's reference
# decoder; a GPT-2 maps onto it exactly (tests check that the logits agree in fp64).

_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
_BLOCK_NAMES = {  # HF suffix -> (reference suffix, Conv1D weight to transpose)
    "ln_1.weight": ("norm1.weight", False), "ln_1.bias": ("norm1.bias", False),
    "attn.c_attn.weight": ("attn_in.weight", True), "attn.c_attn.bias": ("attn_in.bias", False),
    "attn.c_proj.weight": ("attn_out.weight", True), "attn.c_proj.bias": ("attn_out.bias", False),
    "ln_2.weight": ("norm2.weight", False), "ln_2.bias": ("norm2.bias", False),
    "mlp.c_fc.weight": ("fc_in.weight", True), "mlp.c_fc.bias": ("fc_in.bias", False),
    "mlp.c_proj.weight": ("fc_out.weight", True), "mlp.c_proj.bias": ("fc_out.bias", False),
}
_TOP_NAMES = {
    "transformer.wte.weight": "tok_emb.weight", "transformer.wpe.weight": "pos_emb.weight",
    "transformer.ln_f.weight": "norm_f.weight", "transformer.ln_f.bias": "norm_f.bias",
    "lm_head.weight": "head.weight", "lm_head.bias": "head.bias",
}


def reference_name(hf_name: str) -> tuple[str, bool]:
    """The reference decoder's name for an HF GPT-2 parameter, and whether it is transposed."""
    if hf_name in _TOP_NAMES:
        return _TOP_NAMES[hf_name], False
    _, _, layer, suffix = hf_name.split(".", 3)  # transformer.h.<i>.<suffix>
    ref_suffix, transposed = _BLOCK_NAMES[suffix]
    return f"blocks.{layer}.{ref_suffix}", transposed


def gpt2_as_reference(model):
    """A `PreNormDecoder` (fp64) computing the same function as the HF GPT-2 `model`."""
    from normtheory.theory.equivalence.models import DecoderConfig, PreNormDecoder

    cfg = model.config
    if cfg.scale_attn_by_inverse_layer_idx or not cfg.scale_attn_weights:
        raise ValueError("the error model's reference decoder scales attention by 1/sqrt(head_dim) only")
    if cfg.activation_function not in _ACTIVATIONS:
        raise ValueError(f"activation {cfg.activation_function!r} has no reference counterpart")
    gpt2_anatomy(model, inference_only=True)  # the same refusals
    tied = model.lm_head.weight is model.transformer.wte.weight
    params = gpt2_params(model)
    ref_cfg = DecoderConfig(
        vocab=cfg.vocab_size, d=cfg.n_embd, n_layers=cfg.n_layer, n_heads=cfg.n_head,
        d_ff=cfg.n_inner, max_len=cfg.n_positions, activation=_ACTIVATIONS[cfg.activation_function],
        norm="layernorm", norm_affine=model.transformer.ln_f.weight is not None,
        head_bias="lm_head.bias" in params, tie_head=tied, eps=cfg.layer_norm_epsilon,
    )
    reference = PreNormDecoder(ref_cfg).double()
    state = {}
    for name, value in params.items():
        ref, transposed = reference_name(name)
        state[ref] = (value.t() if transposed else value).detach().double()
    reference.load_state_dict(state, strict=not tied)
    return reference.eval()
