"""The three probes: which models each trains, per seed, and what it records.

    curse_of_depth    pre_ln and lns                          with warm-up
    gradient_profile  pre_ln, post_ln, peri_ln and mix_ln     with warm-up
    warmup            pre_ln and post_ln, each with and without warm-up

Within one seed every arm starts from the same initial weights (model.py creates parameters in
the same order for every placement) and sees the same batches in the same order, so the
arm-to-arm differences the claims judge are paired: the seed-to-seed spread of the *difference*
is what the intervals measure.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from normtheory.theory.training.measure import measure_run
from normtheory.theory.training.model import ModelConfig
from normtheory.theory.training.task import MarkovCopyTask, TaskConfig
from normtheory.theory.training.train import TrainConfig, deterministic_torch, train

PROBES = ("curse_of_depth", "gradient_profile", "warmup")

# arm name -> (placement, with warm-up?)
ARMS: dict[str, dict[str, tuple[str, bool]]] = {
    "curse_of_depth": {"pre_ln": ("pre_ln", True), "lns": ("lns", True)},
    "gradient_profile": {name: (name, True) for name in ("pre_ln", "post_ln", "peri_ln", "mix_ln")},
    "warmup": {"pre_ln/warmup": ("pre_ln", True), "pre_ln/no_warmup": ("pre_ln", False),
               "post_ln/warmup": ("post_ln", True), "post_ln/no_warmup": ("post_ln", False)},
}


@dataclass(frozen=True)
class ProbeSettings:
    """Everything that decides a probe's numbers (recorded in its JSON)."""

    probe: str
    seeds: int = 4
    layers: int = 6
    d: int = 64
    heads: int = 4
    steps: int = 400
    batch: int = 16
    lr: float = 3e-3
    warmup_fraction: float = 0.2  # warm-up length in the arms with warm-up, as a share of steps
    threads: int = 1
    device: str = "cpu"
    task: TaskConfig = field(default_factory=lambda: TaskConfig(vocab=16, half=16, branching=2))

    @property
    def warmup_steps(self) -> int:
        return max(1, round(self.warmup_fraction * self.steps))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ProbeSettings:
        values = dict(data)
        values["task"] = TaskConfig(**values["task"])
        return cls(**values)


def default_lr(probe: str) -> float:
    """The warm-up probe runs at a rate where warm-up matters for some placement (a rate at
    which nothing is unstable cannot test Xiong et al.'s claim); the others at a rate that
    trains every placement well. Chosen in pilots before the recorded runs, docs/trained_claims.md."""
    return 1e-2 if probe == "warmup" else 3e-3


def _configs(settings: ProbeSettings, placement: str, warm: bool) -> tuple[ModelConfig, TrainConfig]:
    model = ModelConfig(vocab=settings.task.vocab, seq_len=settings.task.seq_len, d=settings.d,
                        n_layers=settings.layers, n_heads=settings.heads, placement=placement)
    training = TrainConfig(steps=settings.steps, batch=settings.batch, lr=settings.lr,
                           warmup_steps=settings.warmup_steps if warm else 0)
    return model, training


def run_probe(settings: ProbeSettings, *, progress=None) -> dict:
    """Train every arm for every seed; returns {"settings": …, "arms": {arm: [record per seed]}}.
    `progress`: optional callable(steps_done), called as training advances."""
    task = MarkovCopyTask(settings.task)
    arms: dict[str, list[dict]] = {name: [] for name in ARMS[settings.probe]}
    chance = math.log(settings.task.vocab)
    with deterministic_torch(settings.threads):
        for seed in range(settings.seeds):
            for name, (placement, warm) in ARMS[settings.probe].items():
                model_config, train_config = _configs(settings, placement, warm)
                run = train(task, model_config, train_config, seed=seed, progress=progress, device=settings.device)
                record = measure_run(run, bayes_loss=task.bayes_loss(run.validation.cpu()), chance_loss=chance)
                arms[name].append(record | {"seed": seed})
                if progress is not None and run.diverged_at is not None:
                    progress(settings.steps - len(run.losses) + 1)  # the steps it did not run
    return {"probe": settings.probe, "settings": settings.as_dict(), "arms": arms}


def total_steps(settings: ProbeSettings) -> int:
    return settings.seeds * len(ARMS[settings.probe]) * settings.steps


def with_overrides(settings: ProbeSettings, **overrides) -> ProbeSettings:
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})
