"""What claims are judged on: mean-field recordings, the protocol systematic budget, and
evidence produced by other commands (trained-model probes) — no torch here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from normtheory.theory.meanfield.predictions import Estimate, RecordView, estimate

TRAINED_SCHEMA = "normtheory.trained-evidence/1"

# The systematic budget of the fitted depth exponent of the last-layer W2 gradient: how far
# the protocol variants (shared readout instead of per-token; 64 tokens instead of 16;
# cross-entropy instead of the linear readout) move it on identical weights. Measured by
# `python benchmarks/meanfield_protocol_budget.py` (recording: tests/data/meanfield/
# protocol_budget.json, which a test holds this constant to); the largest shift over setups,
# archs and variants, plus two of its standard errors, rounded up.
PROTOCOL_BUDGET_EXPONENT = 0.11
PROTOCOL_BUDGET_SOURCE = "benchmarks/meanfield_protocol_budget.py, tests/data/meanfield/protocol_budget.json"


@dataclass
class Evidence:
    views: list[RecordView] = field(default_factory=list)
    exponent_budget: float = PROTOCOL_BUDGET_EXPONENT
    trained: dict = field(default_factory=dict)  # claim id -> {"tests": [...]} (TRAINED_SCHEMA)

    @classmethod
    def from_records(cls, records: Sequence[dict], **kwargs) -> Evidence:
        return cls([RecordView(r) for r in records], **kwargs)

    def views_with(self, arch: str, setups=("xiong", "standard"), token_readout: bool = False) -> list[RecordView]:
        return [v for v in self.views if arch in v.archs and v.setup in setups
                and (v.token_readout or not token_readout)]


# ------------------------------------------------------------------ statistics helpers
# (Estimate and estimate, per-seed mean and standard error, are meanfield/predictions.py's)


def log_ratio_of_means(a, b) -> Estimate:
    """log(mean a / mean b) from paired per-seed samples, its delta-method SE with the
    covariance of the pairs (the same seeds' weights serve both depths)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = a.size
    ma, mb = a.mean(), b.mean()
    cov = np.cov(a, b, ddof=1)
    var = cov[0, 0] / ma**2 + cov[1, 1] / mb**2 - 2 * cov[0, 1] / (ma * mb)
    return Estimate(float(math.log(ma / mb)), float(math.sqrt(max(var, 0.0) / n)), n)


def slope_estimate(xs, ys: Sequence[Estimate]) -> Estimate:
    """Least-squares slope of y on x with independent-error SE (the points share seeds and are
    positively correlated, which makes this SE conservative for slopes)."""
    x = np.asarray(xs, dtype=np.float64)
    w = (x - x.mean()) / np.sum((x - x.mean()) ** 2)
    slope = float(np.dot(w, [y.mean for y in ys]))
    se = float(math.sqrt(np.sum((w * np.array([y.se for y in ys])) ** 2)))
    return Estimate(slope, se, min(y.n for y in ys))


def log_root_mean(samples) -> Estimate:
    """log sqrt(mean) of squared norms, with its delta-method SE."""
    e = estimate(samples)
    return Estimate(0.5 * math.log(e.mean), 0.5 * e.se / e.mean, e.n)


def deepest_half(depths: Sequence[int]) -> list[int]:
    """The deeper half of a depth grid (at least two depths): where an asymptotic statement is
    judged."""
    ordered = sorted(depths)
    return ordered[-max(2, math.ceil(len(ordered) / 2)):]
