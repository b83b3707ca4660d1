"""Scaled quantization to fp8/fp6/fp4: the recipes of fp8 training, emulated exactly.

Scale convention (Transformer Engine's): a scale s multiplies before the cast and divides
after it,
    q = cast(fl32(y·s)),    y ≈ q / s.
So a larger scale means finer resolution; `ScaledTensor.dequantize()` returns q / s exactly.
(A consumer that multiplies by fl32(1/s) adds at most one fp32 rounding, u32 relative; for
power-of-two scales — MX, or `power_of_two=True` — none.)

Recipes (`scaling` argument; `parse_scaling` reads the command-line spelling):
- "tensor": current scaling — s from amax(|y|) of the whole tensor.
- "delayed": s from the amax history of earlier steps (`DelayedScaling`), the current amax is
  pushed after the cast (TE's delayed scaling); the current step may overflow.
- "row": one s per row (amax over the last axis).
- "block:N": one s per N consecutive entries of a row (the last block may be shorter).
- "mx" / "mx:N": OCP MX v1.0 block scaling, N = 32 by default: the shared scale is the power
  of two X = 2**(floor(log2 amax) − emax_elem) stored as e8m0, elements cast with saturation;
  in the convention above s = 1/X (exact). A block whose amax is 0 gets the smallest scale
  exponent (−127 here), a block holding inf or NaN gets the NaN scale (e8m0 byte 0xFF) and
  NaN elements.

Scale from amax (tensor, delayed, row, block): s = fl32(fmax/amax)/2**margin with fmax the
element format's largest finite value. fl32 of the quotient is computed as a float64 quotient
rounded to fp32: double rounding is innocuous for division when 53 ≥ 2·24 + 2 (Figueroa 1995),
so this is the correctly rounded fp32 division a kernel performs. Edge cases (each keeps
every later step finite and says why):
- amax = 0 (an all-zero tensor): any scale quantizes zeros exactly; keep the previous scale
  (1.0 at the start), as TE does.
- amax = inf or NaN: no information; keep the previous scale. The non-finite entries then
  cast as the format casts them (saturate to ±fmax, or inf / NaN).
- fmax/amax beyond fp32's range (a tiny amax): s = largest finite fp32 (TE's clamp).
- s below fp32's smallest normal (a large amax with a large margin): clamp to the smallest
  normal, so that s is never 0 or subnormal and 1/s stays finite; entries may then saturate.
`power_of_two=True` rounds s down to a power of two (TE's `power_2_scale`): exact scaling.

The element cast multiplies in fp32 (fl32(y·s): y must be fp32 values, so the product is exact
in float64 and one rounding to fp32 is the fp32 multiply) and then rounds to the element format
— two roundings, as a kernel does it; `fp8_output_bound` bounds both. Double-rounding paths
(fp32 → bf16 → e4m3 against the direct fp32 → e4m3) are `cast_through`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from normtheory.errors import UsageError
from normtheory.formats import FORMATS, FloatFormat, as_format
from normtheory.precision import tolerance
from normtheory.precision.lowprecision.scaled_bound import scaled_output_bound
from normtheory.scale_format import E8M0

FP32 = FORMATS["fp32"]
FP32_MAX = FP32.max_finite
FP32_MIN_NORMAL = FP32.min_normal
MX_BLOCK = 32


class ScalingRecipe(NamedTuple):
    """Which entries share an fp8 scale: kind tensor | delayed | row | block | mx, and the
    block size for block and mx. A NamedTuple so `kind, block = recipe` still reads naturally."""

    kind: str
    block: int | None

    def __str__(self) -> str:
        return self.kind if self.block is None else f"{self.kind}:{self.block}"


def parse_scaling(text: str | ScalingRecipe) -> ScalingRecipe:
    """'tensor' | 'delayed' | 'row' | 'block:N' | 'mx' | 'mx:N' -> ScalingRecipe; UsageError otherwise."""
    if isinstance(text, ScalingRecipe):
        return text
    kind, _, size = text.partition(":")
    if kind in ("tensor", "delayed", "row") and not size:
        return ScalingRecipe(kind, None)
    if kind in ("block", "mx"):
        if not size and kind == "mx":
            return ScalingRecipe("mx", MX_BLOCK)
        if size.isdigit() and int(size) >= 1:
            return ScalingRecipe(kind, int(size))
    raise UsageError(f"unknown scaling {text!r}; known: tensor, delayed, row, block:N, mx, mx:N (N >= 1)")


# ---- groups: which entries share a scale -------------------------------------------------
def group_amax(y: np.ndarray, kind: str, block: int | None) -> np.ndarray | np.float64:
    """amax(|y|) per scale group: shape () for tensor/delayed, (rows, 1) for row, (rows, blocks)
    for block/mx. NaN if a group holds a NaN, inf if it holds an inf."""
    a = np.abs(np.atleast_2d(np.asarray(y, dtype=np.float64)))
    if kind in ("tensor", "delayed"):
        return np.max(a) if a.size else np.float64(0.0)
    if kind == "row":
        return np.max(a, axis=1, keepdims=True)
    assert block is not None, "block and mx scaling have a block size (parse_scaling)"
    rows, n = a.shape
    blocks = math.ceil(n / block)
    padded = np.zeros((rows, blocks * block))
    padded[:, :n] = a
    return padded.reshape(rows, blocks, block).max(axis=2)


def expand_scale(scale, shape: tuple[int, ...], kind: str, block: int | None) -> np.ndarray:
    """Per-group scales -> one scale per entry of a 2-D array of `shape`."""
    scale = np.asarray(scale, dtype=np.float64)
    if kind in ("tensor", "delayed", "row"):
        return np.broadcast_to(scale, shape)
    assert block is not None, "block and mx scaling have a block size (parse_scaling)"
    return np.repeat(scale, block, axis=1)[:, : shape[1]]


# ---- scales ------------------------------------------------------------------------------
def scale_from_amax(amax, fmt, *, margin: int = 0, previous=1.0, power_of_two: bool = False) -> np.ndarray:
    """TE-style scale s = fl32(fmax/amax)/2**margin with the edge cases of the module doc."""
    fmax = as_format(fmt).max_finite
    amax = np.asarray(amax, dtype=np.float64)
    previous = np.broadcast_to(np.asarray(previous, dtype=np.float64), amax.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        quotient = FP32.round_to_float64(fmax / amax)  # inf where fmax/amax overflows fp32
        scale = np.minimum(quotient, FP32_MAX) * 2.0**-margin
        scale = np.maximum(FP32.round_to_float64(scale), FP32_MIN_NORMAL)
        if power_of_two:
            scale = np.exp2(np.floor(np.log2(scale)))
    usable = np.isfinite(amax) & (amax > 0)
    return np.where(usable, scale, previous)


def mx_shared_exponent(amax, fmt) -> np.ndarray:
    """OCP MX: floor(log2 amax) − emax_elem, clamped below at −127; NaN for inf/NaN amax."""
    emax = as_format(fmt).emax
    amax = np.asarray(amax, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        _, exponent = np.frexp(np.where(np.isfinite(amax) & (amax > 0), amax, 1.0))
    shared = np.maximum(exponent - 1 - emax, -127).astype(np.float64)
    shared = np.where(amax == 0, -127.0, shared)
    return np.where(np.isfinite(amax), shared, np.nan)


# ---- the cast ----------------------------------------------------------------------------
def scaled_cast(y, scale, fmt, *, saturate: bool) -> np.ndarray:
    """q = cast(fl32(y·s)) for fp32 values y and per-entry fp32 scales s (float64 values)."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        product = FP32.round_to_float64(y * scale)  # exact product of two fp32 values, one rounding
    return as_format(fmt).round_to_float64(product, saturate=saturate)


def cast_through(values, path, *, saturate: bool = False) -> np.ndarray:
    """Round through each format of `path` in turn (e.g. ["bf16", "fp8_e4m3fn"]): the
    double-rounding path of a kernel that stores an intermediate."""
    out = np.asarray(values, dtype=np.float64)
    for index, name in enumerate(path):
        last = index == len(path) - 1
        out = as_format(name).round_to_float64(out, saturate=saturate if last else False)
    return out


@dataclass(frozen=True)
class ScaledTensor:
    values: np.ndarray  # q: float64 values of `fmt`, shaped like the input (2-D)
    scale: np.ndarray  # one fp32 scale per group (see group_amax); q ≈ y·s
    fmt: FloatFormat
    kind: str
    block: int | None = None

    def entry_scale(self) -> np.ndarray:
        return expand_scale(self.scale, self.values.shape, self.kind, self.block)

    def dequantize(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return self.values / self.entry_scale()

    def e8m0_codes(self) -> np.ndarray:
        """MX only: the e8m0 bytes of the shared scales X = 1/s."""
        if self.kind != "mx":
            raise ValueError("only MX scaling stores e8m0 scales")
        with np.errstate(divide="ignore"):
            return E8M0.from_exponent(-np.log2(self.scale))


def quantize(y, fmt, scaling: str = "tensor", *, margin: int = 0, saturate: bool = True,
             power_of_two: bool = False, delayed: DelayedScaling | None = None) -> ScaledTensor:
    """Scaled cast of fp32 values y (2-D: rows × n) to `fmt` under a recipe (module doc)."""
    fmt = as_format(fmt)
    kind, block = parse_scaling(scaling)
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if kind == "delayed":
        if delayed is None:
            raise ValueError("delayed scaling needs its state: pass delayed=DelayedScaling(...)")
        return delayed.quantize(y, saturate=saturate)
    amax = group_amax(y, kind, block)
    if kind == "mx":
        shared = mx_shared_exponent(amax, fmt)
        scale = np.exp2(-shared)  # NaN stays NaN
        values = fmt.round_to_float64(y * expand_scale(scale, y.shape, kind, block), saturate=True)  # exact scaling
        return ScaledTensor(values, scale, fmt, kind, block)
    scale = scale_from_amax(amax, fmt, margin=margin, power_of_two=power_of_two)
    values = scaled_cast(y, expand_scale(scale, y.shape, kind, block), fmt, saturate=saturate)
    return ScaledTensor(values, np.asarray(scale), fmt, kind, block)


class DelayedScaling:
    """TE's delayed scaling: the scale of step t comes from the amaxes of steps t−H … t−1.

    `algo` "max" uses the largest amax of the history, "most_recent" the last one. The history
    starts at zeros and the scale at 1.0 (an empty history keeps the previous scale).
    """

    def __init__(self, fmt, history_len: int = 16, algo: str = "max", margin: int = 0):
        if algo not in ("max", "most_recent"):
            raise ValueError(f"algo must be 'max' or 'most_recent', got {algo!r}")
        if history_len < 1:
            raise ValueError("history_len must be >= 1")
        self.fmt, self.algo, self.margin = as_format(fmt), algo, margin
        self.history = np.zeros(history_len)
        self.scale: np.ndarray | np.float64 = np.float64(1.0)

    def quantize(self, y, *, saturate: bool = True) -> ScaledTensor:
        y = np.atleast_2d(np.asarray(y, dtype=np.float64))
        values = scaled_cast(y, self.scale, self.fmt, saturate=saturate)
        result = ScaledTensor(values, np.asarray(self.scale), self.fmt, "delayed")
        self.history = np.roll(self.history, 1)
        self.history[0] = group_amax(y, "tensor", None)
        reduced = self.history[0] if self.algo == "most_recent" else np.max(self.history)
        self.scale = scale_from_amax(reduced, self.fmt, margin=self.margin, previous=self.scale)
        return result


# ---- bounds for a normalizer with a scaled output (derivation: lowprecision/scaled_bound.py) ----------
def fp8_output_bound(op, x, w=None, b=None, *, format, eps, affine="none", out_format, scale,
                     scaling="tensor", exact, saturate=True, contract="default", pre=None) -> np.ndarray:
    """Per-entry bound on |q/s − y| for a kernel that normalizes in fp32 and returns the scaled
    cast q with scales `scale` (per group of `scaling`; MX casts always saturate).

    `exact` is the exact output y (float64 or mpf values); the fp32 pre-cast error comes from
    `normtheory.precision.tolerance` under `contract`, or is `pre` when the caller has it.
    """
    kind, block = parse_scaling(scaling)
    x2 = np.atleast_2d(np.asarray(x, dtype=np.float64))
    exact_abs = np.abs(np.atleast_2d(np.asarray(exact, dtype=np.float64)))
    if pre is None:
        pre = tolerance(op, x2, w, b, format=format, eps=eps, affine=affine, contract=contract, out_format="fp32",
                        exact=exact_abs)
    pre = np.atleast_2d(pre)
    entry_scale = expand_scale(scale, x2.shape, kind, block)
    return scaled_output_bound(exact_abs, pre, entry_scale, as_format(out_format), saturate=saturate or kind == "mx")


def scale_interval(exact, pre, fmt, scaling="tensor", *, margin: int = 0, power_of_two: bool = False):
    """(lowest, highest) scale per group that the recipe can give when the pre-cast output ŷ
    is within `pre` of `exact` (the scale is monotone, non-increasing in amax).

    A group whose amax may be 0 may also get the fallback scale 1.0 (current scaling) or the
    smallest exponent (MX); a group with an infinite `pre` (no bound) allows any scale."""
    kind, block = parse_scaling(scaling)
    exact_abs = np.abs(np.atleast_2d(np.asarray(exact, dtype=np.float64)))
    pre = np.broadcast_to(np.asarray(pre, dtype=np.float64), exact_abs.shape)
    amax_low = group_amax(np.maximum(exact_abs - pre, 0.0), kind, block)
    amax_high = group_amax(exact_abs + pre, kind, block)
    if kind == "mx":
        low = np.exp2(-mx_shared_exponent(amax_high, fmt))
        high = np.exp2(-mx_shared_exponent(np.where(amax_low > 0, amax_low, 0.0), fmt))
    else:
        low = scale_from_amax(amax_high, fmt, margin=margin, power_of_two=power_of_two)
        high = scale_from_amax(np.where(amax_low > 0, amax_low, np.finfo(np.float64).tiny), fmt, margin=margin,
                               power_of_two=power_of_two)  # amax → 0+: the clamped top scale
        low = np.where(amax_low > 0, low, np.minimum(low, 1.0))  # amax exactly 0: the fallback 1.0
    unbounded = ~np.isfinite(amax_high)
    return np.where(unbounded, 0.0, low), np.where(unbounded, np.inf, high)
