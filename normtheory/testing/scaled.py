"""Judging an fp8 output q with its scale s (Transformer Engine's convention: y ≈ q / s).

The dequantized q/s is judged by `precision.lowprecision.scaling.fp8_output_bound` at the
kernel's own scales — the bound of a kernel that normalizes in fp32 (within the fp32
tolerance of the contract), multiplies by s in fp32 and casts once — as the certifier judges
`--out-format fp8_*` (certify/judge.py). The cast may saturate or not: where the bound of a
non-saturating cast is infinite (the scaled value may reach the overflow threshold) a
non-finite q is accepted, elsewhere the saturating bound applies.

With `scaling` (tensor, row, block:N, mx[:N]) the scales must also be ones that recipe can
give for an output within the fp32 tolerance (`scale_interval`); a wrong scale makes every
element of its group a violation. Without it the scale is taken as given (a static scale).
"""

from __future__ import annotations

import numpy as np

from normtheory.errors import UsageError
from normtheory.testing.compare import QuantityResult, judge_elements
from normtheory.testing.problem import Problem


def _recipe(problem: Problem, scale: np.ndarray, shape2d: tuple[int, int]) -> str:
    """The recipe whose groups the scale has: given, or read off the scale's shape."""
    if problem.scaling is not None:
        return problem.scaling
    rows, n = shape2d
    if scale.size == 1:
        return "tensor"
    if scale.size == rows:
        return "row"
    raise UsageError(f"a scale of shape {scale.shape} for an output of {rows} rows: pass scaling= "
                     "(block:N or mx[:N]) so its groups are known")


def _scale_for_groups(scale: np.ndarray, kind: str, rows: int) -> np.ndarray:
    if kind in ("tensor", "delayed"):
        return scale.reshape(())
    if kind == "row":
        return scale.reshape(rows, 1)
    return scale.reshape(rows, -1)


def judge_scaled(problem: Problem, exact_rows: np.ndarray) -> QuantityResult:
    from normtheory.precision import tolerance
    from normtheory.precision.lowprecision.scaling import expand_scale, fp8_output_bound, parse_scaling, scale_interval

    q = problem.actual["y"]
    p = problem.params
    scale_values = problem.actual["scale"].values
    recipe = _recipe(problem, scale_values, exact_rows.shape)
    kind, block = parse_scaling(recipe)
    scale = _scale_for_groups(scale_values, kind, exact_rows.shape[0])
    try:
        entry_scale = expand_scale(scale, exact_rows.shape, kind, block)
    except ValueError as exc:
        raise UsageError(f"scale of shape {scale_values.shape} does not fit the {recipe} recipe ({exc})") from None
    weight = None if problem.weight is None else problem.weight.values
    bias = None if problem.bias is None else problem.bias.values
    h_format = problem.h.fmt.name
    pre = tolerance(p.op, problem.h_rows, weight, bias, format=h_format, eps=p.eps, affine=p.affine,
                    contract=problem.bound_contract("y"), out_format="fp32", exact=exact_rows)
    bounds = {saturate: fp8_output_bound(p.op, problem.h_rows, weight, bias, format=h_format, eps=p.eps,
                                         affine=p.affine, out_format=q.fmt.name, scale=scale, scaling=recipe,
                                         exact=exact_rows, saturate=saturate, pre=pre)
              for saturate in (True, False)}
    dequantized = q.values.reshape(exact_rows.shape) / entry_scale
    may_overflow = ~np.isfinite(bounds[False]) & ~np.isfinite(dequantized)
    wrong_scale, wrong_groups = None, 0
    if problem.scaling is not None:
        low, high = scale_interval(exact_rows, pre, q.fmt.name, recipe)
        wrong = ~((low <= scale) & (scale <= high))
        wrong_groups = int(np.count_nonzero(wrong))
        wrong_scale = expand_scale(np.broadcast_to(wrong, np.shape(low)), exact_rows.shape, kind, block).astype(bool)
        wrong_scale &= np.isfinite(exact_rows)  # a group holding NaN may get any scale: NaN rules judge it
    result = judge_elements("y", dequantized, exact_rows, bounds[True], q.fmt, q.shape, entry_scale=entry_scale,
                            accept=may_overflow, wrong_scale=wrong_scale)
    result.detail = f"dequantized q/scale, {q.fmt.name} output, {recipe} scaling"
    if wrong_groups:
        result.detail += f"; {wrong_groups} scale(s) the {recipe} recipe cannot give for this output"
    elif problem.scaling is None:
        result.detail += " (a static scale: not checked against a recipe)"
    return result
