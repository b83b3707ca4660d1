"""The verdict and the plain-language findings of a certificate, from what a run measured.

Every number a finding prints is a real measurement: an error/bound, a count, a property of
an input row (its max |x|, |mean|/std), never an internal knob of the search.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from normtheory.precision.contract import Contract

if TYPE_CHECKING:
    from normtheory.certify.engine import RunState
    from normtheory.certify.metrics import Summary

EPS_OUTSIDE_EXPLANATION = "eps_mode:outside"  # explain.py's name for "eps sits outside the root"


def _excess(ratio: float) -> str:
    if math.isfinite(ratio):
        return f"error {ratio:.3g}× the bound"
    return "non-finite outputs where the exact result is finite (or an fp8 scale the recipe cannot give)"


def _judged(family: str) -> bool:
    return not family.startswith("domain_")


def _forward_findings(fwd: Summary, contract: str) -> list[str]:
    findings = []
    for family, ratio in sorted(fwd.per_label.items(), key=lambda kv: -kv[1]):
        if ratio > 1 and _judged(family):
            findings.append(f"forward fails `{contract}` on {family}: {_excess(ratio)}")
    if fwd.nonfinite:
        findings.append(f"forward: {fwd.nonfinite} non-finite outputs where the exact result is finite")
    return findings


def _unbounded_findings(state: RunState, contract: str) -> list[str]:
    findings = []
    for name, summary in [("forward", state.forward)] + [(f"backward {q}", s) for q, s in state.backward.items()]:
        if summary.unbounded:
            where = ", ".join(sorted(summary.unbounded_by_label))
            findings.append(f"{name}: {summary.unbounded} of {summary.elements} elements have no finite bound under "
                            f"`{contract}` (the contract cannot judge them; families: {where})")
    return findings


def _backward_findings(state: RunState, contract: str) -> list[str]:
    findings = []
    for quantity, summary in state.backward.items():
        for family, ratio in sorted(summary.per_label.items(), key=lambda kv: -kv[1]):
            if ratio > 1 and _judged(family):
                findings.append(f"backward {quantity} fails `{contract}` on {family}: {_excess(ratio)}")
                break
        if summary.nonfinite:
            findings.append(f"backward {quantity}: {summary.nonfinite} non-finite values where the exact result is finite")
    return findings


def offset_threshold(row_log) -> str | None:
    """'fails from |mean|/std ≈ X: up to N ulps' when the failing rows are the offset ones."""
    rows = [(offset, ratio, ulps) for label, offset, ratio, ulps in row_log
            if math.isfinite(offset) and not label.startswith(("domain_", "nan_"))]
    failing = [r for r in rows if r[1] > 1]
    passing = [r for r in rows if r[1] <= 1]
    if not failing or not passing:
        return None
    lowest_failing = min(r[0] for r in failing)
    if lowest_failing < 10 or any(r[0] >= lowest_failing for r in passing):
        return None  # failures are not explained by the offset alone
    return (f"forward fails from |mean|/std ≈ {lowest_failing:.2g} up: max {max(r[2] for r in failing):.3g} ulps "
            f"there; every row below passes")


def explanation_findings(explanations: dict) -> list[str]:
    findings = []
    for quantity, models in explanations.items():
        name = "forward" if quantity == "y" else f"backward {quantity}"
        placement = [ratio for model, ratio in models if model == EPS_OUTSIDE_EXPLANATION]
        if placement and placement[0] is None:
            findings.append(f"{name}: with eps outside the root (see the forward) this is the gradient of another "
                            "formula, which the precision model has no bound for")
        elif placement:
            findings.append(f"{name} errors are consistent with eps outside the root, x/(sqrt(s) + eps) (max "
                            f"error/bound {placement[0]:.3g} against that formula): if that is the kernel's "
                            "specification, certify it with --eps-mode outside --no-backward")
        elif models:
            names = ", ".join(f"model:{model} (max error/bound {ratio:.3g})" for model, ratio in models[:3])
            findings.append(f"{name} errors are consistent with {names}")
        else:
            findings.append(f"{name} errors are not explained by any named model of the precision model")
    return findings


def search_finding(search: dict) -> str | None:
    """The hypothesis search's worst row in real numbers, when it broke the contract."""
    ratio = search.get("max_err_over_bound", 0) if search else 0
    if not ratio > 1:
        return None
    row = search.get("worst_row") or {}
    where = (f" on a row with max |x| = {row['max_abs']:.4g}, |mean|/std = {row['mean_over_std']:.3g}, "
             f"max |x|/rms = {row['peak_over_rms']:.3g}, {row['zero_fraction']:.0%} zeros, max |w| = "
             f"{row['max_abs_weight']:.3g}" if row else "")
    return (f"hypothesis search found {search.get('quantity', 'an')} {_excess(ratio)}{where} "
            "(--worst-out FILE saves that row as FILE.search.npz, for `normtheory check`)")


def passes(state: RunState) -> bool:
    fwd = state.forward
    return (not state.faults and fwd.max_err_over_bound <= 1 and fwd.nonfinite == 0 and fwd.nan_mismatch == 0
            and all(s.max_err_over_bound <= 1 and s.nonfinite == 0 for s in state.backward.values())
            and state.hidden_mismatch == 0 and state.deterministic is not False and state.domain_failures == 0)


def verdict_and_findings(state: RunState, contract: Contract | str) -> tuple[str, list[str]]:
    contract = str(contract)
    fwd = state.forward
    findings = list(state.faults) + _forward_findings(fwd, contract) + _unbounded_findings(state, contract)
    threshold = offset_threshold(state.row_log)
    if threshold:
        findings.append(threshold)
    if fwd.wrong_scale:
        findings.append(f"fp8 output: {fwd.wrong_scale} elements carry a scale the recipe cannot give")
    if fwd.nan_mismatch:
        findings.append(f"forward: {fwd.nan_mismatch} outputs are numbers where a NaN input should give NaN "
                        "(NaN inputs turned into numbers)")
    findings += _backward_findings(state, contract)
    if state.hidden_mismatch:
        findings.append(f"fused residual sum: {state.hidden_mismatch} entries of x + residual are not correctly rounded")
    findings += explanation_findings(state.explanations or {})
    findings.extend(state.findings)
    if not state.backward and state.backward_skipped:
        findings.append(state.backward_skipped)
    search = search_finding(state.search)
    if search:
        findings.append(search)
    ok = passes(state)
    if ok:
        back = (f"≤ {max(s.max_err_over_bound for s in state.backward.values()):.3g} backward"
                if state.backward else "backward not checked")
        findings.insert(0, f"pass: error/bound ≤ {fwd.max_err_over_bound:.3g} forward and {back} under `{contract}` "
                           "(≤ 1 passes; near 1 is the output rounding's half ulp, see the report)")
    return ("pass" if ok else "fail"), findings
