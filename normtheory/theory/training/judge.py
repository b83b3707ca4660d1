"""Judge a probe's per-seed records: one interval and verdict per claim, against the registry."""

from __future__ import annotations

import math

from normtheory.theory.training.claims import Arms, claims_for, descriptives_for
from normtheory.theory.training.stats import judge, mean_interval

FAMILY_ALPHA = 0.05  # all of a probe's verdicts hold together at this level (Bonferroni)
DESCRIPTIVE_ALPHA = 0.05  # each descriptive interval on its own


def _values(effect, arms: Arms, n: int) -> list[float]:
    out = []
    for i in range(n):
        try:
            out.append(float(effect(arms, i)))
        except (KeyError, IndexError, ValueError, ZeroDivisionError):
            out.append(math.nan)  # a missing measurement (a diverged run): the seed drops out
    return out


def seed_count(arms: Arms) -> int:
    counts = {len(records) for records in arms.values()}
    if len(counts) != 1:
        raise ValueError(f"arms have different numbers of seeds: {sorted(counts)}")
    return counts.pop()


def judge_result(result: dict, *, family_alpha: float = FAMILY_ALPHA) -> dict:
    """{"claims": [...], "descriptive": [...], "all_as_registered": bool} for a run_probe result."""
    arms, probe = result["arms"], result["probe"]
    n = seed_count(arms)
    claims = claims_for(probe)
    alpha = family_alpha / len(claims)
    judged = []
    for claim in claims:
        values = _values(claim.effect, arms, n)
        interval = mean_interval(values, alpha=alpha)
        verdict = judge(interval)
        judged.append({"id": claim.id, "source": claim.source, "statement": claim.statement,
                       "effect": claim.effect_text, "per_seed": values, "interval": interval.as_dict(),
                       "verdict": verdict, "expected": claim.expected, "as_registered": verdict == claim.expected,
                       "evidence": claim.evidence})
    descriptive = []
    for item in descriptives_for(probe):
        values = _values(item.value, arms, n)
        descriptive.append({"id": item.id, "text": item.text, "per_seed": values,
                            "interval": mean_interval(values, alpha=DESCRIPTIVE_ALPHA).as_dict()})
    return {"claims": judged, "descriptive": descriptive,
            "all_as_registered": all(c["as_registered"] for c in judged)}
