"""What a kernel promises, as a value: `Contract`, parsed once where the user's text enters.

- `default`: within the bound of a careful kernel (the models of `models.DEFAULT_FAMILY`, each
  with and without FMA contraction: `models.DEFAULT_CONTRACT_MODELS`);
- `model:NAME`: within the bound of one named algorithm model (`models.MODELS`);
- `ulp:K`: at most K ulps of the exact result, everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from normtheory.errors import UsageError
from normtheory.precision.models import DEFAULT_CONTRACT_MODELS, MODELS, Model, get_model

KINDS = ("default", "model", "ulp")


@dataclass(frozen=True)
class Contract:
    kind: str  # one of KINDS
    model: str | None = None  # for kind "model"
    ulps: float | None = None  # K, for kind "ulp"

    def __str__(self) -> str:
        if self.kind == "model":
            return f"model:{self.model}"
        if self.kind == "ulp":
            assert self.ulps is not None
            return f"ulp:{self.ulps:g}"
        return "default"

    @property
    def models(self) -> tuple[Model, ...]:
        """The algorithm models whose bounds' elementwise maximum the contract is (none for ulp:K)."""
        if self.kind == "default":
            return DEFAULT_CONTRACT_MODELS
        if self.kind == "model":
            assert self.model is not None
            return (MODELS[self.model],)
        return ()


DEFAULT = Contract("default")


def parse_contract(text: str | Contract) -> Contract:
    """'default' | 'model:NAME' | 'ulp:K' -> Contract; UsageError (exit 2) for anything else."""
    if isinstance(text, Contract):
        return text
    if text == "default":
        return DEFAULT
    kind, _, argument = text.partition(":")
    if kind == "model" and argument:
        get_model(argument)  # UsageError naming the known models
        return Contract("model", model=argument)
    if kind == "ulp":
        try:
            k = float(argument)
        except ValueError:
            raise UsageError(f"contract {text!r}: K in ulp:K must be a number") from None
        if not (k >= 0 and math.isfinite(k)):
            raise UsageError(f"contract {text!r}: K must be finite and >= 0")
        return Contract("ulp", ulps=k)
    raise UsageError(f"unknown contract {text!r}; known: default, model:NAME ({', '.join(MODELS)}), ulp:K")
