"""The normalizer being certified, as one value: `Setting`, built in one place (`make_setting`)
from what a user typed (`normtheory certify`) or what a recording's meta says (`normtheory
check`). Every name is parsed here, once: the op into a registry `NormSpec` (plus whether the
kernel is a fused residual add + norm), formats into `FloatFormat`s, the contract into a
`Contract`, the fp8 recipe into a `ScalingRecipe`. Inner layers take these values only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from normtheory.errors import UsageError
from normtheory.formats import FloatFormat, as_format
from normtheory.precision.contract import DEFAULT, Contract, parse_contract
from normtheory.precision.lowprecision.scaling import MX_BLOCK, ScalingRecipe, parse_scaling
from normtheory.registry import FUSED_OPS, REGISTRY, NormSpec, get_spec, resolve_params

EPS_OUTSIDE = Contract("model", model="eps_outside")


def parse_op(op: str) -> tuple[NormSpec, bool]:
    """(the normalizer's spec, whether the kernel is a fused add + norm); UsageError otherwise."""
    base = FUSED_OPS.get(op, op)
    if base not in REGISTRY:
        raise UsageError(f"unknown op {op!r}; known: {', '.join([*REGISTRY, *FUSED_OPS])}")
    return get_spec(base), op in FUSED_OPS


@dataclass(frozen=True)
class Setting:
    """What the reference and the bounds need to judge one kernel's outputs."""

    op: str  # base op of the registry (add_rmsnorm → rmsnorm)
    fmt: FloatFormat
    w_fmt: FloatFormat
    out_fmt: FloatFormat
    eps: float
    eps_mode: str
    affine: str
    p: float | None
    contract: Contract
    scaling: ScalingRecipe | None = None  # fp8 output recipe (tensor, row, block:N, mx:N)
    saturate: bool = True  # does the fp8 cast saturate (probed for the installed torch)
    fused: bool = False  # the kernel adds a residual first and returns (y, x + residual)

    @property
    def spec(self) -> NormSpec:
        return get_spec(self.op)

    @property
    def op_name(self) -> str:
        """The op as the user names it (add_rmsnorm for a fused kernel)."""
        return next((name for name, base in FUSED_OPS.items() if base == self.op), self.op) if self.fused else self.op

    def describe(self, out_fmt: FloatFormat | None = None) -> dict:
        """The setting as certificates and recordings write it (p: null, a number or "inf")."""
        return {
            "format": self.fmt.name, "w_format": self.w_fmt.name, "out_format": (out_fmt or self.out_fmt).name,
            "eps": self.eps, "eps_hex": self.eps.hex(), "eps_mode": self.eps_mode, "affine": self.affine,
            "p": None if self.p is None else ("inf" if math.isinf(self.p) else self.p),
            "scaling": None if self.scaling is None else scaling_name(self.scaling),
            "fp8_cast_saturates": self.saturate if self.scaling else None,
        }

    @property
    def bound_contract(self) -> Contract:
        # the default contract's models put eps inside the root; a kernel specified with eps
        # outside is held to the same careful algorithm with eps outside
        if self.contract == DEFAULT and self.eps_mode == "outside":
            return EPS_OUTSIDE
        return self.contract


def make_setting(op: str, *, format, w_format=None, out_format=None, eps=None, eps_mode: str = "inside",
                 affine=None, p=None, contract: str | Contract = "default", scaling=None,
                 saturate: bool = True) -> Setting:
    """The one constructor: names or values in, a validated Setting out (UsageError, exit 2)."""
    spec, fused = parse_op(op)
    params = resolve_params(spec.name, eps=eps, eps_mode=eps_mode, affine=affine, p=p)
    fmt = as_format(format)
    return Setting(spec.name, fmt, as_format(w_format) if w_format else fmt, as_format(out_format) if out_format else fmt,
                   params.eps, params.eps_mode, params.affine, params.p, parse_contract(contract),
                   None if scaling is None else parse_scaling(scaling), bool(saturate), fused)


def scaling_name(recipe: ScalingRecipe) -> str:
    """The recipe as users write it: `mx` for MX's standard 32-entry blocks, else kind[:N]."""
    return "mx" if recipe == ScalingRecipe("mx", MX_BLOCK) else str(recipe)


def contract_argument(contract: Contract) -> str:
    """The contract as `precision.tolerance` reads it (ulp:K with K exactly, not rounded for show)."""
    return f"ulp:{contract.ulps!r}" if contract.kind == "ulp" else str(contract)
