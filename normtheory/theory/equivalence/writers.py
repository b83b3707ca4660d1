"""What the equivalence checks can and cannot see: one uncentred residual writer at a time.

The conversion is exact because every residual writer is recentred. In bf16 the logits check
compares two runs whose rounding differences are large (the bound sits at ~10x the typical
difference, failure probability 1e-6), so a wrong conversion whose effect on the logits is
below the check's minimum detectable effect (Comparison.mde) passes it. Two more checks see
such an error:

* the gradient check (the conversion inside the forward, gradients w.r.t. every original
  parameter), and
* the centring check: the converted writers as deployed in the working dtype must be the
  recentred original writers within one rounding. The full d-vector of a converted writer
  (for CRMSNorm: its d - 1 stored coordinates and the implied last one, minus their sum) is
  compared with (I - 11ᵀ/d) W of the original in fp64. Each stored element carries one
  rounding, |fl(c) - c| <= u |c| (u = 2^-p, round to nearest); the implied coordinate carries
  the sum of the stored ones' errors, <= u sum |c_i|; fp64's own error (d 2^-53 max |W| per
  element) is added. A writer left uncentred is off by its row mean along the residual axis,
  which is ~ ||w|| / sqrt(d) per row for any non-degenerate writer: far above u ||w||.

`writer_scan` leaves each writer of a model uncentred in turn and reports, for each: the
wrong conversion's effect on the logits (measured in fp64, so free of rounding), whether the
logits check, the gradient check and the centring check detect it, and the logits check's
MDE. Every writer is either detected or has an effect below the stated MDE, or the claim
"the bf16 check detects a single uncentred writer or states what it cannot see" is refuted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from normtheory.theory.equivalence.check import DTYPES, Comparison, Report, gradient_check, inference_check
from normtheory.theory.equivalence.convert import convert_state
from normtheory.theory.equivalence.noise import SIGNIFICAND_BITS
from normtheory.theory.equivalence.subjects import Subject


def _full_writer(converted: torch.Tensor, axis: int, d: int) -> torch.Tensor:
    """The d-vector a converted writer stands for (CRMSNorm: append minus the stored sum)."""
    w = converted.movedim(axis, -1)
    if w.shape[-1] == d - 1:
        w = torch.cat([w, -w.sum(-1, keepdim=True)], dim=-1)
    return w


def centring_check(subject: Subject, target: str, fmt: str, *, skip_recentre: frozenset[str] = frozenset()) -> Report:
    """The converted writers (fp64 conversion rounded to `fmt`) against the recentred original
    writers, with the one-rounding bound of the module docstring."""
    u = 2.0 ** -SIGNIFICAND_BITS[fmt]
    theta = subject.params()
    with torch.no_grad():
        converted = convert_state(theta, subject.anatomy, target, skip_recentre=skip_recentre)
    report = Report("centring", subject.name, target, fmt, 0)
    d = subject.anatomy.d
    for writer in subject.anatomy.writers:
        names = [(writer.weight, writer.axis)] + ([(writer.bias, 0)] if writer.bias is not None else [])
        for name, axis in names:
            original = theta[name].double().movedim(axis, -1)
            exact = original - original.mean(-1, keepdim=True)
            deployed = converted[name].to(DTYPES[fmt]).double()
            full = _full_writer(deployed, axis, d)
            fp64_slack = d * 2.0**-53 * original.abs().amax(-1, keepdim=True)
            bound_per = u * exact.abs() + fp64_slack
            if deployed.movedim(axis, -1).shape[-1] == d - 1:  # the implied coordinate: the stored errors add up
                bound_per[..., -1:] = u * exact[..., :-1].abs().sum(-1, keepdim=True) + fp64_slack
            error = full - exact
            report.comparisons.append(Comparison(f"writer {name}", error.norm().item(), exact.norm().item(),
                                                 (error.abs().max() / exact.abs().max().clamp_min(1e-300)).item(),
                                                 bound_per.norm().item()))
    return report


@dataclass
class WriterResult:
    writer: str
    effect_relative: float  # ‖Δ logits‖/‖logits‖ of the wrong conversion, in fp64
    logits_detected: bool
    logits_mde_relative: float
    gradients_detected: bool
    centring_detected: bool

    @property
    def accounted_for(self) -> bool:
        """Detected by some check, or its effect lies within the logits check's stated MDE."""
        detected = self.logits_detected or self.gradients_detected or self.centring_detected
        return detected or self.effect_relative <= self.logits_mde_relative

    def to_json(self) -> dict:
        return {**asdict(self), "accounted_for": self.accounted_for}


def writer_scan(subject: Subject, target: str, fmt: str, idx, labels, *, samples: int = 16, seed: int = 0,
                device: str = "cpu") -> list[WriterResult]:
    """Every residual writer of `subject`, left uncentred alone, through every check."""
    results = []
    for writer in subject.anatomy.writers:
        wrong = frozenset({writer.weight})
        effect = inference_check(subject, target, "fp64", idx, samples=8, seed=seed, skip_recentre=wrong,
                                 device=device).relative_difference
        logits = inference_check(subject, target, fmt, idx, samples=samples, seed=seed, skip_recentre=wrong, device=device)
        grads = gradient_check(subject, target, fmt, idx, labels, samples=samples, seed=seed, skip_recentre=wrong,
                               device=device)
        centring = centring_check(subject, target, fmt, skip_recentre=wrong)
        results.append(WriterResult(writer.weight, effect, not logits.passed, logits.worst.mde_relative,
                                    not grads.passed, not centring.passed))
    return results
