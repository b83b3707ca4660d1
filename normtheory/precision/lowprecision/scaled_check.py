"""Judging the output of a norm → fp8 kernel, `(q, scale)`, against the exact y: the one copy of
that judgement. `judge_scaled_elements` gives it element by element (the certifier,
certify/judge.py, turns it into a `Comparison`); `judge_scaled_output` sums it up into a
`ScaledVerdict` (tests, benchmarks/fp8_output_verdicts.py).

Two checks, both from bounds (scaling.py, lowprecision/scaled_bound.py):
1. the dequantized error |q/s − y| stays within `fp8_output_bound` at the kernel's own scales;
2. the kernel's scales are scales the recipe can produce: for current scaling (tensor, row,
   block:N, mx) each group's scale lies in `scale_interval` of the recipe at a pre-cast result
   within the fp32 tolerance of y. Delayed scaling depends on the history, which a single
   output does not carry: that check is skipped and the verdict says so.
A non-finite q/s where y is finite is a failure (docs/design.md: a kernel fault), whether or not a
bound holds there; entries without a bound (a non-saturating cast that may overflow, a row
outside the fp32 kernel's safe domain) are counted and reported, not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from normtheory.precision import tolerance
from normtheory.precision.lowprecision.scaling import expand_scale, fp8_output_bound, parse_scaling, scale_interval


@dataclass
class ScaledElements:
    """The judgement of one (q, scale) output, element by element."""

    dequantized: np.ndarray  # q / s, one scale per entry
    entry_scale: np.ndarray  # the scale of each entry's group
    bound: np.ndarray  # allowed |q/s − y| (inf where no bound holds)
    wrong_group: np.ndarray | None  # per scale group: the recipe cannot give this scale; None: not checked (delayed)
    wrong_scale: np.ndarray | None  # per entry: its group's scale is wrong and its exact value finite


def judge_scaled_elements(op, x, w, b, q, scale, *, format, eps, affine, out_format, scaling, exact, saturate,
                          contract="default", margin=0, power_of_two=False) -> ScaledElements:
    """`exact` is the exact y (float64); q and scale as the kernel returned them (as float64).
    ValueError when the scale's shape does not fit the recipe."""
    recipe = parse_scaling(scaling)
    x2 = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.atleast_2d(np.asarray(exact, dtype=np.float64))
    q = np.atleast_2d(np.asarray(q, dtype=np.float64))
    scale = np.asarray(scale, dtype=np.float64)
    entry_scale = expand_scale(scale, q.shape, recipe.kind, recipe.block)
    # the fp32 pre-cast tolerance serves both the output bound and the scale check
    pre = tolerance(op, x2, w, b, format=format, eps=eps, affine=affine, contract=contract, out_format="fp32",
                    exact=y)
    bound = fp8_output_bound(op, x2, w, b, format=format, eps=eps, affine=affine, out_format=out_format,
                             scale=scale, scaling=recipe, exact=y, saturate=saturate, contract=contract, pre=pre)
    with np.errstate(invalid="ignore", divide="ignore"):
        dequantized = q / entry_scale
    wrong_group = wrong_scale = None
    if recipe.kind != "delayed":
        low, high = scale_interval(y, pre, out_format, recipe, margin=margin, power_of_two=power_of_two)
        wrong_group = ~((low <= scale) & (scale <= high))
        outside = expand_scale(wrong_group, q.shape, recipe.kind, recipe.block).astype(bool)
        wrong_scale = outside & np.isfinite(y)  # a group holding NaN gets whatever scale (MX: NaN); NaN rules judge it
    return ScaledElements(dequantized, entry_scale, bound, wrong_group, wrong_scale)


@dataclass
class ScaledVerdict:
    passed: bool
    max_err_over_bound: float
    worst_index: tuple
    scales_checked: bool
    bad_scales: int
    nonfinite: int
    unbounded: int  # entries where no bound holds (a non-saturating cast may overflow there)
    findings: list[str] = field(default_factory=list)


def judge_scaled_output(op, x, w, b, q, scale, *, format, eps, affine, out_format, scaling, exact,
                        saturate, contract="default", margin=0, power_of_two=False) -> ScaledVerdict:
    elements = judge_scaled_elements(op, x, w, b, q, scale, format=format, eps=eps, affine=affine,
                                     out_format=out_format, scaling=scaling, exact=exact, saturate=saturate,
                                     contract=contract, margin=margin, power_of_two=power_of_two)
    y = np.atleast_2d(np.asarray(exact, dtype=np.float64))
    bound = elements.bound
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.abs(elements.dequantized - y)
        ratio = np.where(np.isfinite(bound), err / bound, 0.0)
    finite_y = np.isfinite(y)
    nonfinite = int(np.count_nonzero(finite_y & ~np.isfinite(err)))
    unbounded = int(np.count_nonzero(finite_y & ~np.isfinite(bound)))
    ratio = np.where(finite_y & np.isfinite(err), ratio, 0.0)
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else ()
    max_ratio = float(ratio[worst]) if ratio.size else 0.0
    findings = []
    if unbounded:
        findings.append(f"{unbounded} entries have no bound (a non-saturating cast may overflow, or the row is "
                        "outside the fp32 kernel's safe domain)")
    if nonfinite:
        findings.append(f"{nonfinite} dequantized outputs are not finite where the exact output is")
    wrong_group = elements.wrong_group
    bad_scales = int(np.count_nonzero(wrong_group)) if wrong_group is not None else 0
    if wrong_group is None:
        findings.append("delayed scaling: the scale depends on the amax history and was not checked")
    elif bad_scales:
        findings.append(f"{bad_scales} scales are not what the {scaling} recipe gives for this output")
    if max_ratio > 1:
        findings.append(f"error {max_ratio:.3g}x the bound at {tuple(int(i) for i in worst)}")
    passed = max_ratio <= 1 and nonfinite == 0 and bad_scales == 0
    return ScaledVerdict(passed, max_ratio, tuple(int(i) for i in worst), wrong_group is not None, bad_scales, nonfinite,
                         unbounded, findings)
