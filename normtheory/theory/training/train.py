"""Short, deterministic training of one TinyDecoder on the Markov-copy task.

AdamW (β = (0.9, 0.98), weight decay 0.01 on matrices only), float32, no gradient clipping (a
clip would hide exactly the instability the warm-up probe looks for), learning rate: linear
warm-up over `warmup_steps` (0 = none: the full rate from the first step), then a cosine decay
to 10 % of the peak at the last step. The schedule after warm-up is the same with and without
warm-up, so the warm-up is the only difference between those runs.

Determinism: `deterministic_torch` fixes the thread count and asks torch for deterministic
kernels; the model's init is seeded by `seed`, the batches by `seed` + a fixed offset, the
validation set by the task's own fixed seed (the same held-out sequences for every run).
Same seed and same settings → the same numbers, bit for bit, on the same machine and torch.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from normtheory.theory.training.model import ModelConfig, TinyDecoder
from normtheory.theory.training.task import MarkovCopyTask

VALIDATION_SEED_OFFSET = 7_000_003  # validation sequences: chain_seed + this
DATA_SEED_OFFSET = 1_000_003  # training batches: seed + this (disjoint from the init stream)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 400
    batch: int = 16
    lr: float = 1e-3
    warmup_steps: int = 40
    weight_decay: float = 0.01
    final_lr_fraction: float = 0.1
    validation_sequences: int = 128


@dataclass
class TrainedRun:
    model: TinyDecoder
    validation: torch.Tensor  # the held-out sequences the measurements use
    losses: list[float] = field(default_factory=list)  # training loss per step
    grad_norms: list[float] = field(default_factory=list)  # total gradient norm per step
    diverged_at: int | None = None  # first step whose loss or gradient was not finite


@contextmanager
def deterministic_torch(threads: int):
    """Within the block: a fixed thread count (reductions split differently with another count)
    and deterministic kernels where torch has them; the caller's settings are restored after."""
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    warn_only_before = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(deterministic_before, warn_only=warn_only_before)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Rate for step 0 … steps−1: linear warm-up to the peak, then cosine to final_lr_fraction."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps - 1)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.final_lr_fraction
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _optimizer(model: TinyDecoder, config: TrainConfig) -> torch.optim.AdamW:
    # decay matrices and embeddings only, not biases or LayerNorm gains (the usual split)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-8)


def lm_loss(model: TinyDecoder, tokens: torch.Tensor, **forward_kwargs) -> torch.Tensor:
    """Next-token cross-entropy over every position but the last."""
    logits = model(tokens[:, :-1], **forward_kwargs)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def validation_set(task: MarkovCopyTask, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(task.config.chain_seed + VALIDATION_SEED_OFFSET)
    return task.sample(n, gen)


def train(task: MarkovCopyTask, model_config: ModelConfig, config: TrainConfig, *, seed: int,
          progress=None, device: str = "cpu") -> TrainedRun:
    """Train one model; stops early (diverged_at set) at the first non-finite loss or gradient.
    `progress`: an optional callable(steps_done) for a progress bar. Data are always drawn on the
    CPU (the same sequences whatever the device) and moved to `device`."""
    torch.manual_seed(seed)
    model = TinyDecoder(model_config).to(device)
    optimizer = _optimizer(model, config)
    data = torch.Generator().manual_seed(seed + DATA_SEED_OFFSET)
    validation = validation_set(task, config.validation_sequences).to(device)
    run = TrainedRun(model=model, validation=validation)
    model.train()
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        loss = lm_loss(model, task.sample(config.batch, data).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
        run.losses.append(float(loss.detach()))
        run.grad_norms.append(float(grad_norm))
        if not (math.isfinite(run.losses[-1]) and math.isfinite(run.grad_norms[-1])):
            run.diverged_at = step
            break
        optimizer.step()
        if progress is not None:
            progress(1)
    model.eval()
    return run
