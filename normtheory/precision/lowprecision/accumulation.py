"""Effective accumulator precision of a matrix product, estimated from a recording.

The probe (benchmarks/accumulation_probe.py) multiplies matrices with positive entries, so
every product is positive and nothing cancels: an accumulator that keeps p significant bits
loses, at each addition, the part of the addend below its last place. The loss grows with the
inner dimension K and halves with every extra bit. Products of fp8/bf16/fp16 values are exact
in binary64, and their K-term sums are exact too (at most 16 + 14 + 2 bits here), so the exact
result of each output is known.

Estimator. Per output, e = (exact − measured)/exact. Two accumulator models are emulated over
a grid of precisions p (significand bits, implicit bit included: fp32 is p = 24), each a
sequential accumulation in K order followed by the rounding to the recorded output format:
"truncate" (the running sum is chopped to p bits after every addition, as an aligned
fixed-point adder without rounding does) and "nearest" (RNE to p bits). The measured mean of |e|
(truncate) or root mean square of e (nearest) is matched on the emulated curve, which falls by
a factor of about 2 per bit, by interpolation in log2: the effective bits are the p of a
sequential accumulator that errs as much. The model is the one whose emulation, at its best
grid precision, reproduces the vector of per-output errors most closely (RMS distance): both
models lose small positive addends, so a one-sided error alone does not identify truncation.
The real hardware order is not sequential (Hopper's tensor cores reduce small groups of
products first), so the number is an
*effective* precision, comparable across K and dtypes, not a register width. (Measured on
emulated blocked accumulators — groups of g products summed exactly, then chopped to p bits —
the estimate fell between p − 1.3 and p + log2 g, and the model choice was not always right:
read a blocked hardware result as a range, not a register width.)

Limits reported, not hidden: when the measured error is at or below what output rounding alone
gives, only a lower bound is known (`at_least=True`); above the grid's worst, an upper bound.

Recording (.npz, loaded with allow_pickle=False): for each case key "<label>/K<k>": arrays
"<key>/a" (M×K) and "<key>/b" (K×N) as raw bits of the input format, "<key>/c" (M×N) the
measured outputs as raw bits of the output format, plus "meta": JSON {"cases": {key: {"label", "k", "in_format", "out_format"}},
"environment": {...}}.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from normtheory.errors import UsageError
from normtheory.formats import FORMATS

GRID = np.arange(6, 33)  # precisions tried (significand bits incl. the implicit one)
MODES = ("truncate", "nearest")


def exact_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A·B exactly (as float64): every product is exact and math.fsum sums exactly."""
    products = a[:, :, None] * b[None, :, :]  # (M, K, N), exact for ≤ 26-bit significands
    out = np.empty((a.shape[0], b.shape[1]))
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            out[i, j] = math.fsum(products[i, :, j])
    return out


def _chop(values: np.ndarray, dropped: np.ndarray, mode: str) -> np.ndarray:
    """Round finite float64 values to 53 − dropped significant bits (per element), exponent
    unbounded: chop (truncate) or RNE, on the binary64 pattern."""
    bits = np.ascontiguousarray(values).view(np.uint64).copy()
    if mode == "nearest":
        half = (np.uint64(1) << (dropped - np.uint64(1))) - np.uint64(1)
        bits += half + ((bits >> dropped) & np.uint64(1))
    bits &= ~((np.uint64(1) << dropped) - np.uint64(1))
    return bits.view(np.float64)


def emulate(a: np.ndarray, b: np.ndarray, precisions, mode: str, out_format: str = "fp32") -> np.ndarray:
    """Sequential accumulation of A·B in K order at each precision: shape (P, M, N)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    precisions = np.asarray(precisions, dtype=np.uint64).reshape(-1, 1, 1)
    dropped = np.uint64(53) - precisions
    acc = np.zeros((precisions.shape[0], a.shape[0], b.shape[1]))
    for k in range(a.shape[1]):
        acc = _chop(acc + np.outer(a[:, k], b[k, :])[None], dropped, mode)
    return FORMATS[out_format].round_to_float64(acc)


@dataclass(frozen=True)
class Estimate:
    label: str
    k: int
    model: str  # "truncate" or "nearest"
    bits: float  # effective precision (significand bits incl. the implicit one)
    at_least: bool  # True: only a lower bound (errors at the output-rounding floor)
    at_most: bool  # True: only an upper bound (errors beyond the grid's coarsest)
    mean_rel_err: float
    rms_rel_err: float


def _statistic(exact, computed, model):
    e = (exact - computed) / exact
    return float(np.mean(np.abs(e))) if model == "truncate" else float(np.sqrt(np.mean(e * e)))


def estimate_bits(a, b, measured, *, label="", out_format="fp32", grid=GRID) -> Estimate:
    exact = exact_products(a, b)
    if not (np.all(exact > 0) and np.all(np.isfinite(measured))):
        raise UsageError(f"{label}: the probe needs positive exact products and finite outputs")
    e = (exact - measured) / exact
    mean, rms = float(np.mean(e)), float(np.sqrt(np.mean(e * e)))
    grid = np.asarray(grid)
    emulated = {mode: emulate(a, b, grid, mode, out_format) for mode in MODES}
    # the model whose emulation, at its best grid precision, reproduces the per-output errors
    # most closely (both models lose small positive addends, so the sign of e alone cannot tell)
    distance = {mode: min(float(np.sqrt(np.mean((e - (exact - c) / exact) ** 2))) for c in emulated[mode])
                for mode in MODES}
    model = min(MODES, key=lambda mode: distance[mode])
    target = _statistic(exact, measured, model)
    curve = np.array([_statistic(exact, c, model) for c in emulated[model]])
    bits, at_least, at_most = _interpolate(grid.astype(float), curve, target)
    return Estimate(label, a.shape[1], model, bits, at_least, at_most, mean, rms)


def _interpolate(grid, curve, target):
    """(bits, at_least, at_most): where the falling curve first drops below target, in log2."""
    if target >= curve[0]:
        return float(grid[0]), False, True
    floor = curve[-1]  # what output rounding alone gives (the grid ends well past fp32's 24)
    if target <= floor * 1.1:
        # the first precision whose error is already at the floor: more bits cannot be seen
        first = next(i for i in range(len(curve)) if curve[i] <= floor * 1.1)
        return float(grid[first]), True, False
    i = max(j for j in range(len(curve)) if curve[j] >= target)  # curve[i + 1] < target
    if i == len(curve) - 1:
        return float(grid[-1]), True, False
    high, low = curve[i], curve[i + 1]
    if low <= 0:  # exact from p_{i+1} on: the crossing is somewhere inside the step
        return float(grid[i]) + 0.5, False, False
    t = (math.log2(high) - math.log2(target)) / (math.log2(high) - math.log2(low))
    return float(grid[i] + t), False, False


def probe_inputs(k: int, fmt: str, rng: np.random.Generator, m: int = 16, n: int = 16, spread: int | None = None):
    """Positive A (m×k) and B (k×n) in `fmt` whose products reach far below the running sum's
    last place: significands uniform in [1, 2), exponents uniform in [−spread, 0] (default:
    6 for fp8, 12 otherwise, keeping every value normal). Products are exact in binary64."""
    f = FORMATS[fmt]
    spread = (6 if f.bits == 8 else 12) if spread is None else spread
    def draw(shape):
        return f.round_to_float64(rng.uniform(1, 2, shape) * np.exp2(-rng.integers(0, spread + 1, shape)))
    return draw((m, k)), draw((k, n))


# ---- recordings ---------------------------------------------------------------------------
def save_recording(path: str, cases: dict, environment: dict) -> None:
    """cases: {key: {"a", "b", "c" (float64 values), "label", "k", "in_format", "out_format"}};
    written as raw bits of the formats (uint8 for fp8, uint16 for bf16/fp16, uint32 for fp32)."""
    arrays: dict[str, Any] = {}
    meta: dict[str, Any] = {"cases": {}, "environment": environment}
    for key, case in cases.items():
        formats = {"a": case["in_format"], "b": case["in_format"], "c": case["out_format"]}
        for name, fmt_name in formats.items():
            fmt = FORMATS[fmt_name]
            values = np.asarray(case[name], dtype=np.float64)
            if not fmt.is_representable(values).all():
                raise ValueError(f"{key}/{name}: values not representable in {fmt_name}")
            arrays[f"{key}/{name}"] = fmt.to_bits(fmt.from_exact_float64(values))
        meta["cases"][key] = {k: case[k] for k in ("label", "k", "in_format", "out_format")}
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)


def load_recording(path: str) -> tuple[dict, dict]:
    if not os.path.exists(path):
        raise UsageError(f"no such recording {path!r}")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            cases = {}
            for key, info in meta["cases"].items():
                formats = {"a": info["in_format"], "b": info["in_format"], "c": info["out_format"]}
                cases[key] = dict(info)
                for name, fmt_name in formats.items():
                    fmt = FORMATS[fmt_name]
                    cases[key][name] = fmt.to_float64(fmt.from_bits(data[f"{key}/{name}"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, TypeError) as exc:
        raise UsageError(f"{path!r} is not an accumulation recording ({type(exc).__name__}: {exc})") from None
    return cases, meta.get("environment", {})


def analyse(path: str) -> list[Estimate]:
    cases, _ = load_recording(path)
    return [estimate_bits(c["a"], c["b"], c["c"], label=c["label"], out_format=c["out_format"])
            for c in sorted(cases.values(), key=lambda c: (c["label"], c["k"]))]
