"""Training equivalence (Jiang et al. 2023, Sec. 3.3) and its failure when AdamW runs on the
converted parameters.

Three trajectories from the same θ₀, the same batches and the same AdamW:
* original: AdamW on θ, forward through the original Pre-LN graph;
* paper:    AdamW on θ, forward through convert(θ) and the converted graph (the conversion is
            part of the forward, autograd differentiates through it). The gradient is the same
            function of θ, so the trajectory is the same — the paper's notion of equivalence;
* direct:   AdamW on θ' = convert(θ₀), the converted parameters as free parameters. AdamW is
            elementwise (its update divides by a per-coordinate √v), so it does not commute
            with recentring (a projection) or folding γ (a per-coordinate scale): the direct
            trajectory computes a different function after the first step.

original vs paper is judged with the bound of `equivalence/bound.py`: the error model is run
through whole noisy trajectories (every gradient under the rounding model, every updated
parameter rounded; AdamW's moment buffers are not perturbed: their rounding changes an
update by a relative u, i.e. by u·lr, far below the parameter's own rounding u·|θ|).
direct is compared in function space (logits on a held-out batch, evaluated in fp64),
because its parameters live in another space; its difference is reported next to the bound
of the paper-style logits difference to say by how much it is not equivalent.
"""

from __future__ import annotations

import copy

import torch

from normtheory.theory.equivalence.bound import tail_factor
from normtheory.theory.equivalence.check import (
    DTYPES,
    Report,
    _cast,
    _module_in,
    _NoisyReference,
    compare,
    loss_of,
    make_batch,
)
from normtheory.theory.equivalence.convert import convert_state
from normtheory.theory.equivalence.subjects import Subject

ADAMW = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}


def _train(params, loss_fn, batches, after_step=None):
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.AdamW(list(params.values()), foreach=False, **ADAMW)
    for idx, labels in batches:
        opt.zero_grad(set_to_none=True)
        loss_fn(params, idx, labels).backward()
        opt.step()
        if after_step is not None:
            with torch.no_grad():
                after_step(params)
    return {k: v.detach() for k, v in params.items()}


def trajectories(subject: Subject, target: str, fmt: str, batches, *, skip_recentre=frozenset(), device="cpu"):
    """θ_N of the original, paper-style and direct runs, in the working dtype (on the CPU)."""
    dtype = DTYPES[fmt]
    original = _module_in(subject.original, dtype, device)
    skeleton = _module_in(subject.skeleton(target), dtype, device)
    theta0 = _cast(subject.params(), dtype, False, device)
    batches = [(idx.to(device), labels.to(device)) for idx, labels in batches]

    def original_loss(p, idx, labels):
        return loss_of(subject.logits(original, p, idx), labels)

    def paper_loss(p, idx, labels):
        return loss_of(subject.converted_logits(target, skeleton, p, idx, skip_recentre=skip_recentre), labels)

    def direct_loss(p, idx, labels):
        return loss_of(subject.logits(skeleton, p, idx), labels)

    with torch.no_grad():
        converted0 = convert_state(subject.params(), subject.anatomy, target)
        if "lm_head.bias" in dict(skeleton.named_parameters()) and "lm_head.bias" not in converted0:
            converted0["lm_head.bias"] = torch.zeros_like(skeleton.lm_head.bias, dtype=torch.float64)
    runs = (
        _train(theta0, original_loss, batches),
        _train(theta0, paper_loss, batches),
        _train(_cast(converted0, dtype, False, device), direct_loss, batches),
    )
    return tuple({k: v.cpu() for k, v in run.items()} for run in runs)


def _noise_second_moments(subject: Subject, target: str, fmt: str, seed: int, batches, held_out, samples: int):
    """Per parameter (original names) and for the held-out logits: the second moment of the
    trajectory's deviation under the rounding-error model, for the original and the paper run."""
    model = _NoisyReference(subject, target, fmt, seed)
    to_orig = subject.to_original_name

    def noisy_run(which: str, noisy: bool):
        graph = model.original_logits if which == "original" else model.in_forward_logits

        def loss_fn(p, idx, labels):
            return loss_of(graph(p, idx, noisy), labels)

        def round_params(p):
            for v in p.values():
                v.add_(model.ops.rounding_error(v))

        final = _train(model.theta, loss_fn, batches, round_params if noisy else None)
        logits = model.original_logits(final, held_out, False).detach()
        return {**{to_orig(k): v for k, v in final.items()}, "held-out logits": logits}

    clean = {w: noisy_run(w, False) for w in ("original", "paper")}
    return {w: model.second_moments(lambda w=w: noisy_run(w, True), clean[w], samples) for w in ("original", "paper")}


def _extra(subject: Subject, target: str, steps: int, logits: dict, direct, thetas: dict) -> dict:
    """What the report adds beyond pass/fail: how far training moved the function, and how far
    AdamW run directly on the converted parameters drifts from the paper's path."""
    start, end_orig, end_paper = logits["start"], logits["original"], logits["paper"]
    converted = convert_state({k: v.double() for k, v in thetas["original"].items()}, subject.anatomy, target)
    return {
        "steps": steps,
        "adamw": {k: list(v) if isinstance(v, tuple) else v for k, v in ADAMW.items()},
        "function_change_during_training": (end_orig - start).norm().item() / start.norm().item(),
        "direct_adamw_relative_logit_difference": direct.diff_norm / direct.reference_norm,
        "direct_adamw_difference_over_bound": direct.ratio,
        "paper_relative_logit_difference": (end_paper - end_orig).norm().item() / end_orig.norm().item(),
        "direct_adamw_parameter_distance": {
            name: (thetas["direct"][name].double() - value.double()).norm().item()
            for name, value in converted.items() if name in thetas["direct"]
        },
    }


def _held_out_logits(subject: Subject, target: str, held_out, thetas: dict) -> dict:
    """The held-out logits in fp64 at the start and at the end of each run."""
    original64 = copy.deepcopy(subject.original).double()
    skeleton64 = subject.skeleton(target)

    def logits(module, params):
        with torch.no_grad():
            return subject.logits(module, _cast(params, torch.float64), held_out)

    return {"start": logits(original64, subject.params()), "original": logits(original64, thetas["original"]),
            "paper": logits(original64, thetas["paper"]), "direct": logits(skeleton64, thetas["direct"])}


def training_check(subject: Subject, target: str, fmt: str, *, steps: int = 5, batch: int = 2, samples: int = 16,
                   seed: int = 0, skip_recentre: frozenset[str] = frozenset(), device: str = "cpu") -> Report:
    vocab = subject.reference.cfg.vocab
    length = subject.reference.cfg.max_len
    batches = [make_batch(vocab, batch, length, seed + 1 + s) for s in range(steps)]
    held_out, _ = make_batch(vocab, batch, length, seed + 10_000)
    theta_orig, theta_paper, theta_direct = trajectories(subject, target, fmt, batches, skip_recentre=skip_recentre,
                                                         device=device)
    thetas = {"original": theta_orig, "paper": theta_paper, "direct": theta_direct}
    s = _noise_second_moments(subject, target, fmt, seed, batches, held_out, samples)
    factor = tail_factor(samples)

    report = Report("training", subject.name, target, fmt, samples)
    for name in theta_orig:
        bound = factor * (s["original"][name] + s["paper"][name]) ** 0.5
        report.comparisons.append(compare(f"θ_{steps} {name}", theta_orig[name], theta_paper[name], bound))
    logits_bound = factor * (s["original"]["held-out logits"] + s["paper"]["held-out logits"]) ** 0.5
    logits = _held_out_logits(subject, target, held_out, thetas)
    report.comparisons.append(compare("held-out logits (paper vs original)", logits["original"], logits["paper"],
                                      logits_bound))
    direct = compare("held-out logits (direct AdamW vs original)", logits["original"], logits["direct"], logits_bound)
    report.extra = _extra(subject, target, steps, logits, direct, thetas)
    return report
