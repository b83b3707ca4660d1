"""The reference and the bounds for every output a caller gave, and the judgement of each.

Reference: `normtheory.reference.correctly_rounded` at fp32 (as the certifier's), which has
at most 2^-13 ulp of error for bf16/fp16 outputs and half an ulp for fp32 ones (the judgement
subtracts it: compare.py). Bounds: `normtheory.precision.tolerance` under the contract, at the
inputs given (x, or the rounded x + residual), for the output's own format.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from normtheory.errors import UsageError
from normtheory.formats import FORMATS
from normtheory.testing.arrays import rows_of
from normtheory.testing.compare import QuantityResult, judge_elements, judge_exact_match
from normtheory.testing.problem import Problem

REFERENCE_FORMAT = "fp32"
BOUND_BLOCK_ROWS = 512  # rows per block of the y and gx bounds: bounded temporaries


@dataclass
class Verdict:
    """What the comparator found: one QuantityResult per judged output."""

    problem: Problem
    results: dict[str, QuantityResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(result.failed for result in self.results.values())

    @property
    def max_ratio(self) -> float:
        """The largest proven error over its bound, over every judged output (≤ 1 passes)."""
        return max((r.max_ratio for r in self.results.values() if r.name != "h"), default=0.0)


def reference(problem: Problem) -> dict[str, np.ndarray]:
    from normtheory.reference import correctly_rounded

    wants_gradients = any(q in problem.actual for q in ("gx", "gw", "gb"))
    p = problem.params
    values = correctly_rounded(
        p.op, problem.h_rows, None if problem.weight is None else problem.weight.values,
        None if problem.bias is None else problem.bias.values, format=REFERENCE_FORMAT, w_format=REFERENCE_FORMAT,
        eps=p.eps, eps_mode=p.eps_mode, affine=p.affine, p=p.p, gy=problem.gy_rows if wants_gradients else None)
    return {key: np.asarray(value, dtype=np.float64) for key, value in values.items()}


def _bound_inputs(problem: Problem, rows: slice):
    """(weight, bias, h rows) as the bounds take them: rows holding NaN/inf are judged by NaN
    propagation alone, so they enter the bounds as zeros."""
    weight = None if problem.weight is None else problem.weight.values
    bias = None if problem.bias is None else problem.bias.values
    h = problem.h_rows[rows]
    finite_rows = np.isfinite(h).all(axis=1)
    if not finite_rows.all():
        h = np.where(finite_rows[:, None], h, 0.0)
    return weight, bias, h


def bound(problem: Problem, quantity: str, exact: np.ndarray | None, fmt_name: str,
          rows: slice = slice(None)) -> np.ndarray:
    """The contract's bound for `quantity` in format `fmt_name` (y, gx: over `rows` only)."""
    from normtheory.precision import tolerance

    p = problem.params
    weight, bias, h = _bound_inputs(problem, rows)
    contract = problem.bound_contract(quantity)
    if quantity == "y":
        return tolerance(p.op, h, weight, bias, format=problem.h.fmt.name, out_format=fmt_name, eps=p.eps,
                         affine=p.affine, contract=contract, exact=exact, p=p.p)
    w_format = problem.weight.fmt.name if problem.weight is not None and quantity == "gx" else fmt_name
    gy = problem.gradient_rows()[rows] if quantity == "gx" else problem.gradient_rows()
    return tolerance(p.op, h, weight, bias, quantity=quantity, gy=gy, w_format=w_format, format=fmt_name,
                     eps=p.eps, affine=p.affine, contract=contract, exact=exact, p=p.p)


def bound_group(problem: Problem, group: tuple[str, ...], exact: dict[str, np.ndarray] | None,
                rows: slice = slice(None)) -> dict[str, np.ndarray]:
    """`bound` of each quantity in `group` (one of `bound_groups`), from one call of
    precision.tolerances: the forward statistics and normalized values (Welford's adjoint
    sweep for LayerNorm, the costly part) are evaluated once for the group instead of once per
    quantity. Each result is exactly `bound(problem, q, ...)` (tests/test_testing_bound_groups.py)."""
    if len(group) == 1:
        quantity = group[0]
        return {quantity: bound(problem, quantity, None if exact is None else exact[quantity],
                                problem.actual[quantity].fmt.name, rows)}
    from normtheory.precision import tolerances

    p = problem.params
    weight, bias, h = _bound_inputs(problem, rows)
    if group == ("y", "gx"):  # as bound(): gx in its format with the weight's; y in its own
        grad_format = problem.actual["gx"].fmt.name
        w_format = problem.weight.fmt.name if problem.weight is not None else grad_format
        out_format, gy = problem.actual["y"].fmt.name, problem.gradient_rows()[rows]
    else:  # gw and gb: bound() takes the gradient's own format for both
        grad_format = w_format = out_format = problem.actual["gw"].fmt.name
        gy = problem.gradient_rows()
    return tolerances(p.op, h, weight, bias, format=grad_format, out_format=out_format, w_format=w_format,
                      eps=p.eps, affine=p.affine, contract=problem.bound_contract(group[0]), exact=exact, p=p.p,
                      quantities=group, gy=gy)


def bound_groups(problem: Problem, quantities: list[str]) -> list[tuple[str, ...]]:
    """Quantities whose bounds one tolerances call gives exactly as `bound` would: y with gx
    when their contracts agree and y's input format is gx's (bound() evaluates y's statistics
    at h's format, gx's at its own); gw with gb when their formats and contracts agree."""
    def same_contract(a: str, b: str) -> bool:
        return problem.bound_contract(a) == problem.bound_contract(b)

    groups: list[tuple[str, ...]] = []
    left = list(quantities)
    if {"y", "gx"} <= set(left) and same_contract("y", "gx") and not problem.params.spec.takes_p \
            and problem.h.fmt.name == problem.actual["gx"].fmt.name:
        groups.append(("y", "gx"))
        left = [q for q in left if q not in ("y", "gx")]
    if {"gw", "gb"} <= set(left) and same_contract("gw", "gb") \
            and problem.actual["gw"].fmt.name == problem.actual["gb"].fmt.name:
        groups.append(("gw", "gb"))
        left = [q for q in left if q not in ("gw", "gb")]
    return groups + [(q,) for q in left]


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _bounds_and_reference(problem: Problem, quantities: list[str]) -> tuple[dict, dict]:
    """The reference and the bounds, computed side by side: numpy and the reference's compiled
    kernels release the GIL, so threads use the cores. y and gx bounds are row-local and are
    computed in blocks of rows (less memory); gw and gb sum over every row. A y judged only by
    its llama semantics needs no reference of the exact normalizer (semantics.py has its own)."""
    rows = problem.h_rows.shape[0]
    needs_exact = problem.contract.kind == "ulp"  # only ulp:K reads the exact values
    llama_y_only = problem.semantics == "llama" and set(problem.actual) <= {"y", "h"} and "scale" not in problem.actual
    with ThreadPoolExecutor(_workers()) as pool:
        ref_future = pool.submit(lambda: {} if llama_y_only else reference(problem))
        ref = ref_future.result() if needs_exact else None
        futures: list = []
        for group in bound_groups(problem, quantities):
            row_local = group[0] in ("y", "gx")
            blocks = [slice(i, i + BOUND_BLOCK_ROWS) for i in range(0, rows, BOUND_BLOCK_ROWS)] \
                if row_local else [slice(None)]
            for block in blocks:
                exact = None if ref is None else {q: ref[q][block] if row_local else ref[q] for q in group}
                futures.append((group, pool.submit(bound_group, problem, group, exact, block)))
        ref = ref_future.result()
        parts: dict[str, list] = {q: [] for q in quantities}
        for group, future in futures:  # submitted in block order: concatenation keeps the rows' order
            result = future.result()
            for q in group:
                parts[q].append(result[q])
        bounds = {q: np.concatenate(ps) if len(ps) > 1 else ps[0] for q, ps in parts.items()}
    return ref, bounds


def _refuse_if_nothing_judged(verdict: Verdict) -> None:
    """An output none of whose elements has a bound was not judged at all: passing it would
    claim what nothing showed (e.g. contract model:bf16_accum at widths where its γ_k ≥ 1)."""

    for result in verdict.results.values():
        if result.elements and result.unbounded == result.elements:
            raise UsageError(f"contract {verdict.problem.contract} gives no finite bound for any element of "
                             f"{result.name} here: nothing would be judged (choose another contract)")


def with_residual_gradient(problem: Problem, vjp: np.ndarray, vjp_bound: np.ndarray, fmt):
    """Fused kernels whose h also receives a gradient gh: x's gradient is gh + J^T·gy.

    The kernel computes ĝ within T (the gx bound, its rounding to `fmt` included) of the VJP g
    and adds gh, rounding to fmt (autograd's accumulation of the unfused graph), or in fp32 and
    then to fmt (a fused kernel): |fl(ĝ + gh) − (g + gh)| ≤ T + (u + u₃₂ + u·u₃₂)·(|g + gh| + T) + η,
    u and η the unit roundoff and half the smallest subnormal of fmt. The reference g + gh is the
    fp32-rounded VJP plus gh in float64 (both fp32 values: exact unless their exponents are 29
    apart, and then within 2^-53 relative), so its resolution is half an fp32 ulp of the VJP."""
    if problem.gh is None:
        raise ValueError("with_residual_gradient needs the problem's gh")
    gh = rows_of(problem.gh.values)
    with np.errstate(invalid="ignore", over="ignore"):
        total = vjp + gh
        resolution = 0.5 * FORMATS["fp32"].ulp(np.where(np.isfinite(vjp), vjp, 0.0)) * (1 + 2.0**-50)
        resolution = resolution + 2.0**-53 * np.abs(np.where(np.isfinite(total), total, 0.0))
        u, u32 = fmt.unit_roundoff, FORMATS["fp32"].unit_roundoff
        limit = vjp_bound + (u + u32 + u * u32) * (np.abs(total) + vjp_bound + resolution) + fmt.min_subnormal / 2
    return total, limit, resolution


def _has_quantity(problem: Problem, quantity: str) -> bool:
    """gw exists only with a weight, gb only with a bias (the reference gives no other)."""
    affine = problem.params.affine
    return quantity in ("y", "gx") or (quantity == "gw" and affine != "none") or (
        quantity == "gb" and affine == "weight_bias")


def judge(problem: Problem) -> Verdict:
    verdict = Verdict(problem)
    plain = [q for q in ("y", "gx", "gw", "gb") if q in problem.actual
             and not (q == "y" and ("scale" in problem.actual or problem.semantics == "llama"))]
    plain = [q for q in plain if q == "y" or q in problem.params.spec.gradients]
    ref, bounds = _bounds_and_reference(problem, [q for q in plain if _has_quantity(problem, q)])
    for quantity in ("y", "gx", "gw", "gb"):
        if quantity not in problem.actual:
            continue
        llama_y = quantity == "y" and problem.semantics == "llama" and "scale" not in problem.actual
        if quantity not in ref and not llama_y:
            verdict.notes.append(f"{quantity} was given but affine {problem.params.affine!r} has no {quantity}: not judged")
            continue
        got = problem.actual[quantity]
        if quantity == "y" and "scale" in problem.actual:
            from normtheory.testing.scaled import judge_scaled

            verdict.results["y"] = judge_scaled(problem, ref["y"])
            continue
        if llama_y:
            from normtheory.testing.semantics import judge_llama

            verdict.results["y"] = judge_llama(problem)
            continue
        exact = ref[quantity]  # (rows, n) for y and gx, (n,) for gw and gb
        limit, resolution = bounds[quantity].reshape(exact.shape), None
        if quantity == "gx" and problem.gh is not None:
            exact, limit, resolution = with_residual_gradient(problem, exact, limit, got.fmt)
        verdict.results[quantity] = judge_elements(quantity, got.values.reshape(exact.shape), exact, limit, got.fmt,
                                                   got.shape, resolution=resolution)
    _refuse_if_nothing_judged(verdict)
    if "h" in problem.actual:
        verdict.results["h"] = judge_exact_match("h", problem.actual["h"].values, problem.h.values, problem.h.fmt,
                                                 problem.h.shape, "x + residual correctly rounded")
    return verdict
