"""`BoundContext`: what every step of one bound evaluation shares.

A bound is evaluated for one algorithm model (models.py), one kind ("worst": a guarantee;
"probabilistic": the λ-statements of toolkit/rounding.py) and one λ. Everything the steps used to
receive as a threaded tuple (acc, u, η, γ's, λ, model) follows from those three values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from normtheory.formats import FORMATS, FloatFormat
from normtheory.precision.models import Model
from normtheory.precision.toolkit.rounding import KINDS, LAMBDA, Gammas, underflow_error


@dataclass(frozen=True)
class BoundContext:
    model: Model
    kind: str = "worst"  # one of rounding.KINDS
    lam: float = LAMBDA  # λ of every probabilistic statement of this evaluation

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def acc(self) -> FloatFormat:
        """The accumulator (compute) format: every operation of the kernel rounds in it."""
        return FORMATS[self.model.acc]

    @property
    def u(self) -> float:
        return self.acc.unit_roundoff

    @property
    def eta(self) -> float:
        """η: one rounding's absolute underflow error in the accumulator."""
        return underflow_error(self.acc, ftz=self.model.ftz)

    @property
    def eta_in(self) -> float:
        """DAZ: how far a loaded input may move (0 without DAZ)."""
        return self.acc.min_normal if self.model.ftz else 0.0

    @property
    def flush(self) -> float:
        """The absolute error of a result flushed to zero (FTZ: η), added linearly per rounding."""
        return self.eta if self.model.ftz else 0.0

    def loaded(self, x: np.ndarray) -> np.ndarray:
        """The inputs as the kernel loads them: under DAZ, |x| < η (the smallest normal) becomes 0."""
        return np.where(np.abs(x) < self.eta, 0.0, x) if self.model.ftz else x

    @property
    def probabilistic(self) -> bool:
        return self.kind == "probabilistic"

    @property
    def gammas(self) -> Gammas:
        """γ_k of this kind (γ̃_k(λ) for the probabilistic kind)."""
        return Gammas(self.u, self.kind, self.lam)

    def gamma(self, k: float) -> float:
        return self.gammas(k)

    def worst_gamma(self, k: float) -> float:
        """γ_k, whatever the kind: for single, possibly systematic errors and worst-case drifts."""
        return Gammas(self.u, "worst")(k)

    def with_kind(self, kind: str, lam: float = LAMBDA) -> BoundContext:
        return replace(self, kind=kind, lam=lam)
