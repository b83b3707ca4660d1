"""Algorithm models: what a normalization kernel does, operation by operation.

A `Model` fixes every choice that changes the rounding errors of a kernel: how the row
statistics are computed, the reduction order, the accumulator format, the rsqrt accuracy,
FMA contraction, subnormal handling, and where the output is rounded. `emulation/forward.py` runs a
model exactly; `bounds/forward.py` bounds its error. Both read the same record, so a bound is always
the bound of the algorithm that was run.

Reduction order (`lanes`): lane t (0 <= t < L) accumulates elements t, t + L, t + 2L, ...
sequentially, then the L lane results are combined by a butterfly tree (lane t with lane
t + L/2, then t + L/4, ...: the warp-shuffle pattern), L padded with zeros to a power of two.
`lanes=1` is sequential summation; `lanes=None` means one lane per element (pairwise tree).
The deepest path has (ceil(n/L) - 1) + ceil(log2 L) roundings: `reduction_depth`.

Every named model is a model of a class of kernels, not a mirror of one kernel (bit-identical
mirrors of real kernels live in mirrors/cpu.py; a mirror can be a member of a model's class):
  default              a model of a class of kernels: careful GPU kernels (32-lane tree, two-pass,
                       rsqrt within 2 ulps, FMA).
  welford              a model of a class of kernels: the same with per-lane Welford statistics.
  two_pass_sequential  a model of a class of kernels: one sequential lane. torch 2.13 CPU rms_norm
                       (mirrors.torch_rms_norm) is a member: its sum is never deeper.
  two_pass_pairwise    a model of a class of kernels: a pairwise tree, correctly rounded rsqrt, no FMA.
  welford_sequential   a model of a class of kernels: sequential Welford.
  onepass              a model of a class of kernels: E[x²] − E[x]² statistics.
  fp16_accum, bf16_accum  models of a class of kernels: sequential accumulation in fp16 / bf16.
  truncate             a model of a class of kernels: output rounded toward zero.
  llama                a model of a class of kernels: HF Llama's cast placement (the Llama
                       composite on torch CPU, mirrors.hf_llama_rms_norm, is checked against it,
                       not proven a member: its sum is deeper than 32 lanes for 711 widths in 6..767).
  eps_outside          a model of a class of kernels: r = 1/(sqrt(v) + eps).
  offset_bf16          a model of a class of kernels: (1 + w) formed in bf16.
  approx_rsqrt         a model of a class of kernels: an rsqrt with 2^-10 relative error.
  ftz                  a model of a class of kernels: subnormals flushed (FTZ/DAZ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from normtheory.errors import UsageError

STATS = ("two_pass", "welford", "one_pass")
OUTPUTS = ("once", "llama", "truncate")


@dataclass(frozen=True)
class Model:
    name: str
    stats: str = "two_pass"
    lanes: int | None = 32  # a warp per row: the most sequential layout a tree kernel uses
    acc: str = "fp32"  # accumulator / compute format
    rsqrt_ulps: int = 2  # the result is moved this many acc ulps (CUDA rsqrtf: 2 ulp)
    rsqrt_rel: float = 0.0  # extra relative error of an approximate rsqrt (0: none)
    fma: bool = True  # contract a*b + c into one rounding where a compiler may
    ftz: bool = False  # flush subnormal results (and inputs: DAZ) to zero
    output: str = "once"  # once: round z once; llama: round n, then affine in the out format
    offset_format: str | None = None  # format (1 + w) is formed in; None: the accumulator
    eps_mode: str = "inside"  # where the kernel itself puts eps

    def __post_init__(self):
        if self.stats not in STATS:
            raise ValueError(f"stats must be one of {STATS}, got {self.stats!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.acc not in ("fp32", "fp16", "bf16"):
            # Arith's exact FMA and innocuous double rounding need p <= 24 (binary64 underneath)
            raise ValueError(f"accumulator must be fp32, fp16 or bf16, got {self.acc!r}")
        if self.lanes is not None and self.lanes < 1:
            raise ValueError("lanes must be >= 1 or None")

    def lane_count(self, n: int) -> int:
        return n if self.lanes is None else max(1, min(self.lanes, n))

    def per_lane(self, n: int) -> int:
        return math.ceil(n / self.lane_count(n))

    def tree_levels(self, n: int) -> int:
        return math.ceil(math.log2(self.lane_count(n))) if self.lane_count(n) > 1 else 0

    def reduction_depth(self, n: int) -> int:
        """Roundings on the deepest path of an n-term sum (the first add into a lane is exact)."""
        return self.per_lane(n) - 1 + self.tree_levels(n)

    def variant(self, **changes) -> Model:
        return replace(self, **changes)


DEFAULT = Model("default")

MODELS: dict[str, Model] = {
    model.name: model
    for model in (
        DEFAULT,
        DEFAULT.variant(name="welford", stats="welford"),
        DEFAULT.variant(name="two_pass_sequential", lanes=1),
        DEFAULT.variant(name="two_pass_pairwise", lanes=None, fma=False, rsqrt_ulps=0),
        DEFAULT.variant(name="welford_sequential", stats="welford", lanes=1),
        DEFAULT.variant(name="onepass", stats="one_pass"),
        DEFAULT.variant(name="fp16_accum", acc="fp16", lanes=1),
        DEFAULT.variant(name="bf16_accum", acc="bf16", lanes=1),
        DEFAULT.variant(name="truncate", output="truncate"),
        DEFAULT.variant(name="llama", output="llama"),
        DEFAULT.variant(name="eps_outside", eps_mode="outside"),
        DEFAULT.variant(name="offset_bf16", offset_format="bf16"),
        DEFAULT.variant(name="approx_rsqrt", rsqrt_rel=2.0**-10),
        DEFAULT.variant(name="ftz", ftz=True),
    )
}

# Models that a careful GPU kernel may be, and that the `default` contract must accept.
DEFAULT_FAMILY = ("default", "welford")

# What the `default` contract evaluates: every model of DEFAULT_FAMILY as named (FMA contraction)
# and unfused (fma=False: each product rounded on its own, as eager CPU code or nvcc --fmad=false
# does). Contraction is allowed, not required, so the tolerance is the elementwise maximum over
# both. In exact arithmetic the unfused bound is never below the fused one (every place fma enters
# a bound adds a nonnegative term without it), but the bounds are evaluated in binary64 with sums
# grouped differently, and where the two are equal mathematically (a lane sum of at most one step)
# the unfused one can come out an ulp of binary64 lower: the maximum keeps the guarantee exact.
DEFAULT_CONTRACT_MODELS = tuple(
    variant
    for name in DEFAULT_FAMILY
    for variant in (MODELS[name], MODELS[name].variant(name=f"{name}_unfused", fma=False))
)


def get_model(name: str) -> Model:
    try:
        return MODELS[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
