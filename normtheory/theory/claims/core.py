"""Claims as registered expectations, and how one is judged (no torch here).

A claim restates what a source says (a bound, an asymptotic law, an exact value), how this
project judges it, and what verdict the project expects, with the evidence for that
expectation. Judging a claim on a run gives one of three verdicts:

  HOLDS          no comparison of the claim is rejected, and the run could have seen a
                 deviation of the claim's registered resolution (MDE <= resolution);
  REFUTED        at least one comparison is rejected, family-wise error controlled by Holm's
                 step-down procedure over THIS claim's comparisons at level 5%;
  INCONCLUSIVE   nothing is rejected but the run is too small to see the resolution
                 (underpowered), or the run holds no evidence for the claim.

A comparison (`Test`) holds a measured value with its standard error and degrees of freedom,
the interval the claim allows ([lower, upper]; one-sided claims have an infinite edge), a
model error (what the prediction neglects, derived where it is stated) and a systematic
error (what protocol variants move the quantity by: the budget of docs/claims.md). Its
p-value is that of the distance beyond the allowed interval widened by model and systematic
error: P(|T| > distance/se) two-sided, P(T > distance/se) for a one-sided claim; a
deterministic comparison (se = 0) is rejected exactly when the distance is positive.

Minimum detectable effect (per comparison): the deviation beyond the claim's value that this
comparison detects with power 80% at its Bonferroni level (level/m, conservative for Holm):
model error + systematic + (t_crit + t_power) * se. The claim's MDE is the smallest over its
comparisons (the most sensitive one), relative to the predicted value where the quantity is
a positive magnitude and absolute otherwise (exponents, logarithms).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import mpmath

from normtheory.theory.claims.evidence import Evidence
from normtheory.theory.meanfield.predictions import student_t_quantile

VERDICTS = ("HOLDS", "REFUTED", "INCONCLUSIVE")
EXPECTATIONS = ("holds", "refuted", "inconclusive")
FAMILY_ALPHA = 0.05
POWER = 0.80
KINDS = ("upper bound w.h.p.", "asymptotic law", "exact", "band", "conditional", "bound", "trained")


@lru_cache(maxsize=8192)
def student_t_sf(t: float, dof: int) -> float:
    """P(T > t) for Student's t with `dof` degrees of freedom (t >= 0)."""
    if t <= 0:
        return 0.5
    with mpmath.workdps(30):
        x = dof / (dof + t * t)
        return float(mpmath.betainc(dof / 2.0, 0.5, 0, x, regularized=True) / 2)


@dataclass
class Test:
    """One comparison of a claim against measurement."""

    label: str  # where: setup, arch, d, L, ...
    quantity: str
    measured: float
    se: float
    dof: int
    lower: float  # the claim's allowed interval; -inf/inf for one-sided claims
    upper: float
    model_error: float = 0.0
    systematic: float = 0.0
    relative: bool = True  # MDE relative to the predicted value (False: exponents, logs)
    p_value: float = float("nan")
    rejected: bool = False
    mde: float = float("nan")

    @property
    def one_sided(self) -> bool:
        return math.isinf(self.lower) or math.isinf(self.upper)

    @property
    def predicted(self) -> float:
        finite = [v for v in (self.lower, self.upper) if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else 0.0

    @property
    def distance(self) -> float:
        """How far the measurement lies beyond the widened interval (<= 0: inside)."""
        beyond = max(self.lower - self.measured, self.measured - self.upper)
        return beyond - self.model_error - self.systematic

    def compute_p_value(self) -> float:
        dist = self.distance
        if dist <= 0:
            return 1.0
        if self.se <= 0:
            return 0.0
        tail = student_t_sf(dist / self.se, max(1, self.dof))
        return tail if self.one_sided else min(1.0, 2.0 * tail)

    def compute_mde(self, m: int, alpha: float = FAMILY_ALPHA) -> float:
        side = 1 if self.one_sided else 2
        dof = max(1, self.dof)
        crit = student_t_quantile(1.0 - alpha / (side * m), dof) + student_t_quantile(POWER, dof)
        absolute = self.model_error + self.systematic + crit * self.se
        scale = abs(self.predicted) if self.relative and self.predicted != 0 else 1.0
        return absolute / scale


def holm(tests: Sequence[Test], alpha: float = FAMILY_ALPHA) -> None:
    """Holm's step-down over one claim's comparisons: FWER <= alpha for any dependence."""
    for t in tests:
        t.p_value = t.compute_p_value()
        t.rejected = False
        t.mde = t.compute_mde(len(tests), alpha)
    m = len(tests)
    for k, t in enumerate(sorted(tests, key=lambda x: x.p_value)):
        if t.p_value > alpha / (m - k):
            break
        t.rejected = True


@dataclass(frozen=True)
class Claim:
    """A registered expectation. `tests(evidence)` returns the comparisons the evidence
    allows (none: the run holds no evidence for this claim)."""

    id: str
    source: str  # paper, arXiv id, theorem/lemma/equation
    says: str  # what the source claims, restated
    kind: str  # one of KINDS
    judged: str  # how this project judges it
    expectation: str  # holds | refuted | inconclusive
    evidence: str  # why that expectation: which run showed what
    tests: Callable[[Evidence], list[Test]]
    resolution: float  # the deviation (relative, or absolute for exponents) the run must be able to see
    variant_of: str | None = None  # a deliberately wrong variant of this claim id
    setting: str = ""  # the setups/archs it applies to, in words

    def __post_init__(self):
        if self.expectation not in EXPECTATIONS or self.kind not in KINDS:
            raise ValueError(f"{self.id}: bad expectation {self.expectation!r} or kind {self.kind!r}")


@dataclass
class ClaimResult:
    claim: Claim
    tests: list[Test] = field(default_factory=list)
    verdict: str = "INCONCLUSIVE"
    reason: str = ""

    @property
    def mde(self) -> float:
        """The most sensitive statistical comparison's MDE (deterministic ones, se = 0, only
        when the claim has nothing else)."""
        statistical = [t.mde for t in self.tests if t.se > 0] or [t.mde for t in self.tests]
        return min(statistical, default=float("nan"))

    @property
    def matches(self) -> bool:
        return self.verdict == self.claim.expectation.upper()

    @property
    def underpowered(self) -> bool:
        return self.verdict == "INCONCLUSIVE" and bool(self.tests)


def judge(claim: Claim, evidence: Evidence, alpha: float = FAMILY_ALPHA) -> ClaimResult:
    tests = claim.tests(evidence)
    result = ClaimResult(claim, tests)
    if not tests:
        result.reason = "no evidence in this run"
        return result
    holm(tests, alpha)
    rejected = [t for t in tests if t.rejected]
    if rejected:
        worst = min(rejected, key=lambda t: t.p_value)
        result.verdict, result.reason = "REFUTED", f"{len(rejected)}/{len(tests)} rejected (Holm), worst {worst.label}"
    elif result.mde > claim.resolution:
        result.verdict = "INCONCLUSIVE"
        result.reason = f"underpowered: MDE {result.mde:.3g} > resolution {claim.resolution:.3g}"
    else:
        result.verdict, result.reason = "HOLDS", f"0/{len(tests)} rejected; MDE {result.mde:.3g} <= {claim.resolution:.3g}"
    return result


def judge_all(claims: Sequence[Claim], evidence: Evidence, alpha: float = FAMILY_ALPHA) -> list[ClaimResult]:
    return [judge(c, evidence, alpha) for c in claims]


def exit_code(results: Sequence[ClaimResult], *, allow_underpowered: bool = False) -> int:
    """0 when every judged claim's verdict matches its expectation, 1 when one differs
    (an underpowered INCONCLUSIVE differs too, unless allow_underpowered)."""
    for r in results:
        if not r.tests:
            continue
        if not r.matches and not (allow_underpowered and r.underpowered):
            return 1
    return 0
