"""A synthetic language with learnable structure, generated on the fly from fixed seeds.

Each sequence has two halves of `half` tokens:

* the first half follows a fixed random *second-order* Markov chain over `vocab` tokens: every
  context (a, b) of the two previous tokens allows only `branching` successors, with random
  probabilities. Predicting it needs attention to the previous token (an MLP on the current
  token alone cannot see the context), so it exercises attention and MLP alike;
* the second half repeats the first half token for token, so that every token there is
  determined by a token `half` positions back: a second, attention-only skill (copying).

The chain is drawn once from `chain_seed` (the same language for every training seed, every
architecture and every run); batches are drawn from a generator seeded by the caller, so two
runs with the same seed see the same data in the same order.

The Bayes loss (the mean of −log p_true over the predicted positions) is exact for this task
and is reported as the floor that no model can beat: it tells how much of the learnable
structure a run has learnt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TaskConfig:
    vocab: int = 32
    half: int = 32  # sequence length is 2 * half
    branching: int = 3  # successors allowed per context of the chain
    chain_seed: int = 20250205

    @property
    def seq_len(self) -> int:
        return 2 * self.half


class MarkovCopyTask:
    """Sampler of the language above; `transition[a, b]` is the distribution of the next token
    after (a, b)."""

    def __init__(self, config: TaskConfig):
        if config.vocab < 2 or not 1 <= config.branching <= config.vocab or config.half < 3:
            raise ValueError("need vocab >= 2, 1 <= branching <= vocab and half >= 3")
        self.config = config
        gen = torch.Generator().manual_seed(config.chain_seed)
        v, k = config.vocab, config.branching
        # successors: k distinct tokens per context; weights: a flat Dirichlet draw (normalised
        # exponentials), so some successors are likely and some rare
        successors = torch.argsort(torch.rand(v, v, v, generator=gen), dim=-1)[..., :k]
        weights = -torch.log(torch.rand(v, v, k, generator=gen, dtype=torch.float64))
        weights = weights / weights.sum(dim=-1, keepdim=True)
        transition = torch.zeros(v, v, v, dtype=torch.float64)
        transition.scatter_(-1, successors, weights)
        self.transition = transition

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n sequences of length 2·half (int64)."""
        cfg = self.config
        first = torch.empty(n, cfg.half, dtype=torch.int64)
        first[:, :2] = torch.randint(cfg.vocab, (n, 2), generator=generator)
        for t in range(2, cfg.half):
            probs = self.transition[first[:, t - 2], first[:, t - 1]]
            first[:, t] = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return torch.cat([first, first], dim=1)

    def bayes_loss(self, tokens: torch.Tensor) -> float:
        """Mean over the predicted positions (targets tokens[:, 1:]) of −log p_true(target | past).

        Targets 1 (the second token: uniform) and 2 … half−1 (the chain) carry entropy; every
        target from position half on is determined by the token `half` places back, which the
        model has seen, and by the position, which it is told (learned positional embedding)."""
        cfg = self.config
        n = tokens.shape[0]
        nll = torch.zeros(n, 2 * cfg.half - 1, dtype=torch.float64)
        uniform = torch.log(torch.tensor(float(cfg.vocab), dtype=torch.float64))
        nll[:, 0] = uniform  # target at position 1
        for t in range(2, cfg.half):
            p = self.transition[tokens[:, t - 2], tokens[:, t - 1], tokens[:, t]]
            nll[:, t - 1] = -torch.log(p)
        return float(nll.mean())
