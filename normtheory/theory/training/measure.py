"""What the probes measure on a trained model, all on the fixed held-out sequences.

* validation loss, and its increase when one block is replaced by the identity (layer removal,
  the "performance drop" of the layer-pruning studies the Curse of Depth paper builds on);
* the angular distance arccos(cos(x_l, x_{l+1}))/π between the residual stream before and after
  each block, averaged over every token (Gromov et al.'s similarity measure, there taken on the
  last token only; a block that barely turns the stream has a distance near 0);
* the root mean square of the residual stream x_0 … x_L (the variance whose growth with depth
  the Curse of Depth and Peri-LN papers analyse);
* each block's gradient norm: the Euclidean norm of the loss gradient over all of the block's
  parameters (attention, MLP and the block's own LayerNorms), the quantity Mix-LN plots per layer.

Everything is computed in float32 without dropout (the model has none) and without touching
the training state: gradients are zeroed before and after.
"""

from __future__ import annotations

import math

import torch

from normtheory.theory.training.model import TinyDecoder
from normtheory.theory.training.train import TrainedRun, lm_loss


@torch.no_grad()
def validation_loss(model: TinyDecoder, tokens: torch.Tensor, *, skip_block: int | None = None) -> float:
    return float(lm_loss(model, tokens, skip_block=skip_block))


@torch.no_grad()
def removal_deltas(model: TinyDecoder, tokens: torch.Tensor) -> list[float]:
    """Loss with block l removed minus the full model's loss, for every block l."""
    full = validation_loss(model, tokens)
    return [validation_loss(model, tokens, skip_block=l) - full for l in range(len(model.blocks))]


@torch.no_grad()
def residual_stream(model: TinyDecoder, tokens: torch.Tensor) -> list[torch.Tensor]:
    """x_0 (embeddings) … x_L, each (B, T, d), on the inputs of the language-model loss."""
    hidden: list[torch.Tensor] = []
    model(tokens[:, :-1], hidden=hidden)
    return hidden


def angular_distances(hidden: list[torch.Tensor]) -> list[float]:
    """Per block l: mean over tokens of arccos(cos(x_l, x_{l+1}))/π, in [0, 1]."""
    out = []
    for before, after in zip(hidden[:-1], hidden[1:]):
        cos = torch.nn.functional.cosine_similarity(before, after, dim=-1).clamp(-1.0, 1.0)
        out.append(float(torch.arccos(cos).mean() / math.pi))
    return out


def stream_rms(hidden: list[torch.Tensor]) -> list[float]:
    """Root mean square of each of x_0 … x_L over tokens and coordinates."""
    return [float(h.pow(2).mean().sqrt()) for h in hidden]


def block_gradient_norms(model: TinyDecoder, tokens: torch.Tensor) -> list[float]:
    """‖∂loss/∂θ_block‖₂ for every block, the loss being the held-out loss of the trained model."""
    model.zero_grad(set_to_none=True)
    lm_loss(model, tokens).backward()
    norms = []
    for block in model.blocks:
        squares = [p.grad.pow(2).sum() for p in block.parameters() if p.grad is not None]
        norms.append(float(torch.stack(squares).sum().sqrt()))
    model.zero_grad(set_to_none=True)
    return norms


def measure_run(run: TrainedRun, *, bayes_loss: float, chance_loss: float) -> dict:
    """Every measurement of one trained run, as a JSON-ready dict. A run that diverged gets its
    losses recorded as NaN (the probes then read its loss as `chance_loss`, see probes.py)."""
    tokens = run.validation
    half = len(run.grad_norms) // 2
    late = [g for g in run.grad_norms[half:] if math.isfinite(g)]
    record = {
        "diverged_at": run.diverged_at,
        "steps_run": len(run.losses),
        "bayes_loss": bayes_loss,
        "chance_loss": chance_loss,
        "train_loss_last": run.losses[-1] if run.losses else math.nan,
        "train_grad_norm_late_median": float(torch.tensor(late).median()) if late else math.nan,
        "train_grad_norm_late_max": max(late) if late else math.nan,
    }
    if run.diverged_at is not None:
        return record | {"final_val_loss": math.nan}
    hidden = residual_stream(run.model, tokens)
    return record | {
        "final_val_loss": validation_loss(run.model, tokens),
        "removal_delta": removal_deltas(run.model, tokens),
        "angular_distance": angular_distances(hidden),
        "stream_rms": stream_rms(hidden),
        "block_grad_norm": block_gradient_norms(run.model, tokens),
    }
