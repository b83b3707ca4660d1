"""Pre-LN → Pre-RMSNorm → Pre-CRMSNorm conversion (Jiang et al. 2023, arXiv 2305.14858).

Why it is exact: LN(x) = RMSNorm(x − mean(x)1), and LN(x + c1) = LN(x). In a Pre-LN model the
residual stream is read only through LayerNorms, so removing its mean changes nothing
downstream. The stream is a sum of embeddings and branch outputs; recentring every one of
those writers (W ← W − (1/d)11ᵀW, b ← b − mean(b)) makes the stream zero-mean everywhere, and
then every LN equals an RMSNorm with the same ε. LN's γ, β are folded into the linear maps
that read the normalised vector (W ← W diag γ, b ← b + Wβ). For CRMSNorm the zero-mean stream
is stored by its first d − 1 coordinates: writers drop their last output row, readers see
x_d = −Σ_{i<d} x_i, so their weights become A_i − a_d (the last input column subtracted).

The converter works on a state dict, with torch operations only, so the same function
1. converts a model once (inference), and
2. runs inside the forward during training (the paper's definition of training equivalence:
   the optimizer updates the original parameters; autograd differentiates through the
   conversion).

A model is described by its `Anatomy`: which parameters write into the residual stream and
which read a normalised copy of it, with the axis that has length d. Models whose function
the transform cannot preserve exactly are refused with `ConversionRefused` and a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from normtheory.theory.equivalence.models import DecoderConfig, PreNormDecoder

TARGETS = ("rmsnorm", "crmsnorm")


class ConversionRefused(ValueError):
    """The model cannot be converted without changing its function; the message says why."""


@dataclass(frozen=True)
class Writer:
    """A parameter whose output is added to the residual stream (embedding or output projection)."""

    weight: str
    axis: int  # the axis of length d (the residual coordinate)
    bias: str | None = None


@dataclass(frozen=True)
class Reader:
    """A linear map applied to a normalised copy of the residual stream."""

    weight_src: str
    weight_dst: str  # differs from weight_src when a tied head is untied
    axis: int
    bias_src: str | None
    bias_dst: str  # created when the source has no bias and β must be folded


@dataclass(frozen=True)
class NormSite:
    weight: str | None
    bias: str | None
    readers: tuple[Reader, ...]


@dataclass(frozen=True)
class Anatomy:
    d: int
    writers: tuple[Writer, ...]
    norms: tuple[NormSite, ...]


def _along_last(t: torch.Tensor, axis: int) -> torch.Tensor:
    return t.movedim(axis, -1)


def convert_state(
    params: Mapping[str, torch.Tensor],
    anatomy: Anatomy,
    target: str,
    *,
    skip_recentre: frozenset[str] = frozenset(),
) -> dict[str, torch.Tensor]:
    """The converted model's parameters, as differentiable functions of `params`.

    Parameters that the anatomy does not mention pass through unchanged. `skip_recentre`
    exists only to build deliberately wrong conversions for the tests (a writer left
    uncentred must be caught by the equivalence check).
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    crms = target == "crmsnorm"
    out = dict(params)
    for site in anatomy.norms:
        for name in (site.weight, site.bias):
            if name is not None:
                out.pop(name, None)
    for site in anatomy.norms:
        gamma = params[site.weight] if site.weight is not None else None
        beta = params[site.bias] if site.bias is not None else None
        for reader in site.readers:
            w = _along_last(params[reader.weight_src], reader.axis)  # (..., d)
            bias = params[reader.bias_src] if reader.bias_src is not None else None
            if beta is not None:
                folded = w @ beta  # uses the weight before γ is folded in: W(γ⊙n + β)
                bias = folded if bias is None else bias + folded
            if gamma is not None:
                w = w * gamma
            if crms:
                w = w[..., :-1] - w[..., -1:]
            out[reader.weight_dst] = w.movedim(-1, reader.axis)
            if bias is not None:
                out[reader.bias_dst] = bias
    for writer in anatomy.writers:
        w = _along_last(params[writer.weight], writer.axis)
        if writer.weight not in skip_recentre:
            w = w - w.mean(-1, keepdim=True)
        if crms:
            w = w[..., :-1]
        out[writer.weight] = w.movedim(-1, writer.axis)
        if writer.bias is not None:
            b = params[writer.bias]
            if writer.weight not in skip_recentre:
                b = b - b.mean()
            out[writer.bias] = b[:-1] if crms else b
    return out


# ---------------------------------------------------------------- reference decoder


def reference_anatomy(cfg: DecoderConfig, *, inference_only: bool = False) -> Anatomy:
    """Anatomy of normtheory's `PreNormDecoder`, or `ConversionRefused` with the reason."""
    if cfg.norm != "layernorm":
        raise ConversionRefused(f"the model already uses {cfg.norm}; only LayerNorm models are converted")
    if cfg.placement == "post":
        if cfg.norm_affine:
            raise ConversionRefused(
                "Post-LN with affine: the residual stream is γ⊙LN(x)+β itself, which is not zero-mean "
                "and cannot be recentred without changing the function"
            )
        raise ConversionRefused("Post-LN: this converter handles Pre-LN models only (branches read the raw stream)")
    if cfg.dropout > 0 and not inference_only:
        raise ConversionRefused(
            f"dropout p={cfg.dropout} at the branch ends and embeddings: a dropped-out recentred vector is no "
            "longer zero-mean, so LN ≠ RMSNorm in training (pass inference_only=True to convert for eval mode)"
        )
    affine = cfg.norm_affine
    writers = [Writer("tok_emb.weight", 1), Writer("pos_emb.weight", 1)]
    norms = []
    for i in range(cfg.n_layers):
        p = f"blocks.{i}."
        writers += [Writer(p + "attn_out.weight", 0, p + "attn_out.bias"), Writer(p + "fc_out.weight", 0, p + "fc_out.bias")]
        for norm, reader in (("norm1", "attn_in"), ("norm2", "fc_in")):
            norms.append(
                NormSite(
                    p + norm + ".weight" if affine else None,
                    p + norm + ".bias" if affine else None,
                    (Reader(p + reader + ".weight", p + reader + ".weight", 1, p + reader + ".bias", p + reader + ".bias"),),
                )
            )
    head_src = "tok_emb.weight" if cfg.tie_head else "head.weight"
    head = Reader(head_src, "head.weight", 1, "head.bias" if cfg.head_bias else None, "head.bias")
    norms.append(NormSite("norm_f.weight" if affine else None, "norm_f.bias" if affine else None, (head,)))
    return Anatomy(cfg.d, tuple(writers), tuple(norms))


def converted_reference_config(cfg: DecoderConfig, target: str) -> DecoderConfig:
    # The head gains a bias when β_f is folded into it; a tied head is untied (the embedding
    # is recentred, the head folds γ_f).
    return cfg.replace(
        norm=target, norm_affine=False, head_bias=cfg.head_bias or cfg.norm_affine, tie_head=False, dropout=0.0
    )


def reference_params(model: PreNormDecoder) -> dict[str, torch.Tensor]:
    """Named parameters, each tied tensor once (the anatomy names tok_emb for a tied head)."""
    return dict(model.named_parameters())


def convert_reference(
    model: PreNormDecoder,
    target: str,
    *,
    inference_only: bool = False,
    skip_recentre: frozenset[str] = frozenset(),
) -> PreNormDecoder:
    """A new `PreNormDecoder` with `target` norms computing the same function as `model`."""
    anatomy = reference_anatomy(model.cfg, inference_only=inference_only)
    new_cfg = converted_reference_config(model.cfg, target)
    ref = next(model.parameters())
    converted = PreNormDecoder(new_cfg).to(dtype=ref.dtype, device=ref.device)
    with torch.no_grad():
        state = convert_state(reference_params(model), anatomy, target, skip_recentre=skip_recentre)
        converted.load_state_dict(state, strict=True)
    return converted.eval()
