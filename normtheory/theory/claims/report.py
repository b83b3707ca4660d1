"""Claims as text and JSON: the registry table and judged results (no torch here)."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict

from normtheory.theory.claims.core import ClaimResult
from normtheory.theory.claims.registry import all_claims


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def results_to_json(results: list[ClaimResult]) -> list[dict]:
    rows = []
    for r in results:
        c = r.claim
        rows.append({
            "id": c.id, "source": c.source, "says": c.says, "kind": c.kind, "judged": c.judged,
            "setting": c.setting, "expectation": c.expectation, "evidence": c.evidence,
            "variant_of": c.variant_of, "resolution": c.resolution, "verdict": r.verdict,
            "matches": r.matches, "reason": r.reason, "mde": _finite(r.mde),
            "tests": [{k: _finite(v) for k, v in asdict(t).items()} for t in r.tests],
        })
    return rows


def print_registry(out=None) -> None:
    """source -> statement -> judged how -> expectation, one block per claim."""

    out = out if out is not None else sys.stdout
    for c in all_claims():
        variant = f" (wrong variant of {c.variant_of})" if c.variant_of else ""
        print(f"{c.id}{variant} [{c.kind}; {c.setting}]", file=out)
        print(f"  source:   {c.source}", file=out)
        print(f"  says:     {c.says}", file=out)
        print(f"  judged:   {c.judged}; resolution {c.resolution:g}", file=out)
        print(f"  expected: {c.expectation.upper()} ({c.evidence})", file=out)


def format_mde(result: ClaimResult) -> str:
    """Relative (%) for magnitudes, absolute for exponents and logs, 'exact' for deterministic claims."""
    if not result.tests:
        return "-"
    if all(t.se == 0 for t in result.tests):
        return "exact"
    relative = any(t.relative for t in result.tests if t.se > 0)
    return f"{100 * result.mde:.2g}%" if relative else f"{result.mde:.3g}"


def markdown_table(results: list[ClaimResult]) -> str:
    """docs/claims.md's table: source -> statement -> judged how -> expectation -> verdict -> MDE."""
    lines = ["| claim | source | statement | judged how | expected | verdict | MDE | tests |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        c = r.claim
        mde = format_mde(r)
        verdict = r.verdict if r.tests else "no evidence"
        cells = [c.id, c.source, c.says, c.judged, c.expectation.upper(), verdict, mde,
                 f"{sum(t.rejected for t in r.tests)}/{len(r.tests)} rejected"]
        lines.append("| " + " | ".join(x.replace("|", "/") for x in cells) + " |")
    return "\n".join(lines)
