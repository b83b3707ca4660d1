"""The AssertionError text, in the spirit of torch.testing.assert_close: per output, how many
elements broke the bound, the worst one (index, value, exact value, ulps, bound), which rows,
and how to replay the comparison."""

from __future__ import annotations

import numpy as np

from normtheory.testing.compare import QuantityResult
from normtheory.testing.judge import Verdict

_NAMES = {"y": "y", "gx": "gx (gradient of x)", "gw": "gw (gradient of the weight)", "gb": "gb (gradient of the bias)",
          "h": "h (the fused x + residual)"}


def _number(value: float) -> str:
    return "nan" if np.isnan(value) else f"{value:.9g}"


def _headline(verdict: Verdict) -> str:
    problem = verdict.problem
    p = problem.params
    op = f"add + {p.op}" if problem.fused else p.op
    semantics = ", cast-before-weight semantics" if problem.semantics == "llama" else ""
    shape = "×".join(str(s) for s in problem.x.shape)
    return (f"Not within the derived bound of the exact {op} (contract {problem.contract}{semantics}; eps={p.eps:g}, "
            f"eps_mode {p.eps_mode}, affine {p.affine}; x: {problem.h.fmt.name} {shape}).")


def _quantity_lines(result: QuantityResult) -> list[str]:
    share = 100.0 * result.violations / max(result.elements, 1)
    what = "differ from the correctly rounded sum" if result.name == "h" else "beyond the bound"
    lines = [f"{_NAMES.get(result.name, result.name)}, {result.fmt.name}: mismatched elements: "
             f"{result.violations} / {result.elements} ({share:.2g}%) {what}"
             + (f"; greatest error/bound {result.max_ratio:.3g}" if result.name != "h" else "")]
    worst = result.worst
    if worst:
        kind = f" [{worst['kind']}]" if worst.get("kind") else ""
        lines.append(
            f"  worst at index {worst['index']}{kind}: got {_number(worst['got'])}, exact {_number(worst['exact'])}"
            f" (correctly rounded to fp32), error {worst['error']:.3g} = {worst['ulps']:.3g} ulp({result.fmt.name}), "
            f"bound {worst['bound']:.3g}")
    if result.rows:
        more = " …" if result.row_count > len(result.rows) else ""
        lines.append(f"  {result.row_label}s with violations ({result.row_count}): "
                     f"{', '.join(map(str, result.rows))}{more}")
    if result.detail:
        lines.append(f"  ({result.detail})")
    return lines


def failure_message(verdict: Verdict, *, msg: str | None, replay: str) -> str:
    lines = [msg, ""] if msg else []
    lines.append(_headline(verdict))
    for result in verdict.results.values():
        if result.failed:
            lines += _quantity_lines(result)
    passed = [f"{r.name} (error/bound {r.max_ratio:.3g})" for r in verdict.results.values() if not r.failed]
    if passed:
        lines.append("Within the bound: " + ", ".join(passed) + ".")
    unbounded = [f"{r.unbounded} of {r.name}" for r in verdict.results.values() if r.unbounded]
    if unbounded:
        lines.append("Not judged (the contract gives no bound there): " + ", ".join(unbounded) + " elements.")
    lines += verdict.notes
    lines.append(replay)
    return "\n".join(lines)
