"""One `NormSpec` record per normalizer (OpInfo style).

Tests, the reference CLI and the certifier iterate over `REGISTRY`; adding a normalizer is
adding one record here, and, when its statistic or eps floor is new, one entry in each layer's
statistic_rules.py (reference, precision/bounds, precision/emulation; docs/design.md).

Definitions (row x of width d; n is the width the kernel receives):
- layernorm  y = (x - mean x) / sqrt(var x + eps)            (biased variance, n = d)
- rmsnorm    y = x / sqrt(mean(x²) + eps)                     (n = d)
- crmsnorm   y = z / sqrt((Σz² + (Σz)²)/d + eps)              (z = x[:-1], n = d - 1; divisor d)
- lpnorm     y = x / ((1/d)Σ|x|^p + eps^(p/2))^(1/p)          (eps is an RMS floor sqrt(eps) for
             every p; p = 2 is rmsnorm; p = inf is x / max(max|x|, sqrt(eps)))
- l2normalize y = x / max(‖x‖₂, eps)                          (torch.nn.functional.normalize over
             the last dimension, p = 2: eps is a floor on the norm itself, default 1e-12 as in
             torch; no divisor, ‖x‖₂² = Σx²)
With eps_mode "outside" the root and eps are added instead: x / (root + eps) (for lpnorm the
root is ((1/d)Σ|x|^p)^(1/p), so p = 2 is still rmsnorm outside; for l2normalize ‖x‖₂ + eps).
"inside" is the op's own placement, `NormSpec.eps_floor`: "add" puts eps under the root
(sqrt(s + eps)), "max" makes it a floor on the root (max(sqrt(s), eps), l2normalize's and torch's).
l2normalize's gradient follows torch's clamp_min convention: at the tie ‖x‖₂ == eps the
gradient flows through the norm (clamp_min passes it where x >= min), so the floor branch,
gx = g/eps with no projection, is taken only where Σx² < eps² (decided exactly, in rationals);
above and at the tie gx = (g − y·(yᵀg))/‖x‖₂. A zero row is 0/eps = 0 with gradient g/eps, and
with eps = 0 it is 0/0: NaN, as for the other ops.
Affine modes: none (y), weight (y·w), weight_bias (y·w + b), offset_weight (y·(1 + w)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from normtheory.errors import UsageError

EPS_MODES = ("inside", "outside")
AFFINE_MODES = ("none", "weight", "weight_bias", "offset_weight")


@dataclass(frozen=True)
class ErrorInput:
    """An input the reference must refuse, with the words its message must contain."""

    description: str
    kwargs: dict
    message_contains: str


# What the normalizer divides by, before eps: code branches on this, never on the op's name.
STATISTICS = (
    "variance",  # mean((x - mean x)^2): LayerNorm
    "mean_square",  # mean(x^2): RMSNorm
    "crms",  # (sum z^2 + (sum z)^2) / d over the d - 1 stored coordinates: CRMSNorm
    "power_mean",  # mean(|x|^p), then the 1/p root: Lp
    "sum_square",  # sum(x^2), divisor 1, not d: L2 normalisation (the squared Euclidean norm)
)

# How eps enters with eps_mode "inside": under the root, sqrt(s + eps), or as a floor on the
# root, max(sqrt(s), eps) (l2normalize). eps_mode "outside" is sqrt(s) + eps for both.
EPS_FLOORS = ("add", "max")


@dataclass(frozen=True)
class NormSpec:
    name: str
    formula: str
    default_eps: float
    default_affine: str
    centred: bool  # subtracts the row mean (LayerNorm)
    drops_last_coordinate: bool  # kernel sees d - 1 entries (CRMSNorm)
    takes_p: bool
    families: tuple[str, ...]
    statistic: str  # one of STATISTICS
    error_inputs: tuple[ErrorInput, ...] = field(default=())
    gradients: tuple[str, ...] = ("gx", "gw", "gb")  # the VJP outputs the reference and bounds give
    eps_floor: str = "add"  # one of EPS_FLOORS: how eps enters with eps_mode "inside"

    def input_width(self, d: int) -> int:
        """Entries per row the kernel receives for model width d."""
        return d - 1 if self.drops_last_coordinate else d

    def model_width(self, n: int) -> int:
        """Model width d for a kernel row of n entries."""
        return n + 1 if self.drops_last_coordinate else n

    def statistic_divisor(self, n: int) -> int:
        """What the statistic's sum is divided by (and the backward's K = Σg·ŷ/divisor) for a
        row of n stored entries: the model width for the mean statistics, 1 for a plain sum."""
        return 1 if self.statistic == "sum_square" else self.model_width(n)


_ALL_FAMILIES = (
    "normal", "offset_1e2", "offset_1e4", "offset_1e6", "outlier", "heavy_tail",
    "near_overflow", "tiny", "constant", "near_constant", "sparse",
)

_COMMON_ERRORS = (
    ErrorInput("negative eps", {"eps": -1e-5}, "eps"),
    ErrorInput("NaN eps", {"eps": math.nan}, "eps"),
    ErrorInput("unknown eps placement", {"eps_mode": "between"}, "eps_mode"),
    ErrorInput("unknown affine mode", {"affine": "scale"}, "affine"),
)

REGISTRY: dict[str, NormSpec] = {
    spec.name: spec
    for spec in (
        NormSpec(
            name="layernorm",
            formula="(x - mean(x)) / sqrt(var(x) + eps)",
            default_eps=1e-5,
            default_affine="weight_bias",
            centred=True,
            drops_last_coordinate=False,
            takes_p=False,
            families=_ALL_FAMILIES,
            statistic="variance",
            error_inputs=_COMMON_ERRORS + (ErrorInput("p given", {"p": 3.0}, "p"),),
        ),
        NormSpec(
            name="rmsnorm",
            formula="x / sqrt(mean(x^2) + eps)",
            default_eps=1e-6,
            default_affine="weight",
            centred=False,
            drops_last_coordinate=False,
            takes_p=False,
            families=_ALL_FAMILIES,
            statistic="mean_square",
            error_inputs=_COMMON_ERRORS + (ErrorInput("p given", {"p": 3.0}, "p"),),
        ),
        NormSpec(
            name="crmsnorm",
            formula="z / sqrt((sum(z^2) + sum(z)^2)/d + eps), z = x[:-1]",
            default_eps=1e-6,
            default_affine="weight",
            centred=False,
            drops_last_coordinate=True,
            takes_p=False,
            families=_ALL_FAMILIES,
            statistic="crms",
            error_inputs=_COMMON_ERRORS + (ErrorInput("p given", {"p": 3.0}, "p"),),
        ),
        NormSpec(
            name="lpnorm",
            formula="x / ((1/d) sum(|x|^p) + eps^(p/2))^(1/p)",
            default_eps=1e-6,
            default_affine="weight",
            centred=False,
            drops_last_coordinate=False,
            takes_p=True,
            families=_ALL_FAMILIES,
            statistic="power_mean",
            error_inputs=_COMMON_ERRORS
            + (
                ErrorInput("p missing", {"p": None}, "p"),
                ErrorInput("p below 1", {"p": 0.5}, "p"),
                ErrorInput("p NaN", {"p": math.nan}, "p"),
            ),
        ),
        NormSpec(
            name="l2normalize",
            formula="x / max(sqrt(sum(x^2)), eps)",
            default_eps=1e-12,  # torch.nn.functional.normalize's default
            default_affine="none",  # F.normalize has none; the affine modes act after it (y·w: QK-norm gains)
            centred=False,
            drops_last_coordinate=False,
            takes_p=False,
            families=_ALL_FAMILIES,
            statistic="sum_square",
            error_inputs=_COMMON_ERRORS + (ErrorInput("p given", {"p": 2.0}, "p"),),
            eps_floor="max",
        ),
    )
}


# fused residual add + norm kernels, fn(x, residual, weight, bias, eps) -> (y, x + residual): the
# fused op's name and the normalizer it applies to h = x + residual
FUSED_OPS = {"add_layernorm": "layernorm", "add_rmsnorm": "rmsnorm"}


def get_spec(op: str) -> NormSpec:
    try:
        return REGISTRY[op]
    except KeyError:
        raise UsageError(f"unknown op {op!r}; known: {', '.join(REGISTRY)}") from None


@dataclass(frozen=True)
class NormParams:
    """A normalizer with every parameter fixed and validated."""

    op: str
    eps: float
    eps_mode: str
    affine: str
    p: float | None  # float('inf') for the max-norm

    @property
    def spec(self) -> NormSpec:
        return REGISTRY[self.op]


def resolve_params(op: str, *, eps=None, eps_mode="inside", affine=None, p=None) -> NormParams:
    """Fill defaults from the registry and validate; UsageError on anything invalid."""
    spec = get_spec(op)
    eps = spec.default_eps if eps is None else eps
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise UsageError(f"eps must be a number, got {eps!r}") from None
    if not (eps >= 0 and math.isfinite(eps)):
        raise UsageError(f"eps must be finite and >= 0, got {eps!r}")
    if eps_mode not in EPS_MODES:
        raise UsageError(f"eps_mode must be one of {', '.join(EPS_MODES)}, got {eps_mode!r}")
    affine = spec.default_affine if affine is None else affine
    if affine not in AFFINE_MODES:
        raise UsageError(f"affine must be one of {', '.join(AFFINE_MODES)}, got {affine!r}")
    if spec.takes_p:
        p = parse_p(p)
    elif p is not None:
        raise UsageError(f"p is only for lpnorm, not {op}")
    return NormParams(op, eps, eps_mode, affine, p)


def parse_p(p) -> float:
    if p is None:
        raise UsageError("lpnorm needs p (a number >= 1, or inf)")
    try:
        value = float(p)  # float("inf") parses "inf"
    except (TypeError, ValueError):
        raise UsageError(f"p must be a number >= 1 or inf, got {p!r}") from None
    if not value >= 1:  # also rejects NaN
        raise UsageError(f"p must be a number >= 1 or inf, got {p!r}")
    return value
