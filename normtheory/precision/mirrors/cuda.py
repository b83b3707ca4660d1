"""NEAR-mirrors of CUDA LayerNorm / RMSNorm forwards: bit-identical given the kernel's rsqrt value
per row, which is NOT emulated. torch's vectorized kernel, and Liger's Triton LayerNorm at d = 64.

Mirrored: torch 2.11.0+cu130 on an H200 (sm_90), as recorded by `normtheory record` (copies of
the recordings in tests/data/mirrors/cuda_*). The kernel is used when d is a multiple of 4 and
the tensors are aligned; other widths run a different kernel that is not mirrored here.

What is emulated exactly (fp32 arithmetic, every operation rounded once, nvcc's FMA contraction):
  128 threads as 4 warps of 32. Thread t reads the 4-element vectors t, t + 128, ... and runs
  Welford on each element in order (count c, mean m, M):
      LayerNorm: δ = fl(x − m); m = fma(δ, fl(1/c), m); M = fma(δ, fl(x − m), M)
      RMSNorm:   M = fma(x, x, M)
  then a butterfly inside each warp (lane t takes lane t + 16, + 8, + 4, + 2, + 1) and the
  same between warps (warp y takes warp y + 2, then y + 1), each step Chan's merge of the
  other (A) into its own (B): k = fl(1/(cA + cB)), nA = fl(cA·k), nB = fl(cB·k),
  m = fma(nA, mA, fl(nB·mB)), M = fma(fl(fl(δ·δ)·cA), nB, fl(MA + MB)), δ = fl(mB − mA)
  (RMSNorm: M = fl(MA + MB)); a merge with no elements on either side gives zeros.
  var = fl(M/d); v = fl(var + fl(eps)).
  Output: LayerNorm with weight and bias fma(w, fl(r·fl(x − μ)), b); RMSNorm with weight
  fl(w·fl(r·x)); one rounding to bf16/fp16 where that is the format.
What is not: r = rsqrtf(v). CUDA's rsqrtf is a hardware approximation documented to 2 ulps;
its exact values on sm_90 are not public. `torch_cuda_forward` takes r as the correctly rounded
value moved by `rsqrt_ulps` fp32 ulps per row, and `rsqrt_offsets` finds, per recorded row, the
offset that reproduces the recorded outputs. On the recorded rows that offset is within ±1 ulp;
the recordings cannot tell the 4-warp layout from a single warp at these widths (d = 64: all
data is in warp 0), so the inter-warp stage is as read in the source, not as measured.

How much the recordings prove differs by op. In LayerNorm the mean enters every output, so a
wrong order fails most rows even with the free rsqrt (a sequential Welford reproduces 27 of the
88 fp32 rows); in RMSNorm the statistic only reaches the output through r, so one free value per
row absorbs the order: several orders (sequential excepted) reproduce all 88 rows within ±1 ulp.
The RMSNorm order is therefore read from the source and merely consistent with the recordings.

Liger LayerNorm (liger_kernel with Triton 3.6.0, same H200), `liger_layer_norm`: two-pass,
μ = fl(S(x)/d), t = fl(x − μ), var = fl(S(fl(t·t))/d), output fma(fl(t·r), w, b), where S is
Triton's tl.sum for a 64-element block over 4 warps: element i sits in lane i mod 32 of warp
i // 32 (warps 2 and 3 hold copies and are not counted), each warp sums its lanes by a xor
butterfly (lane l takes lane l ^ 16, ^ 8, ^ 4, ^ 2, ^ 1) and the two warp sums are added. Only
d = 64 was recorded; other widths get other layouts and are refused. Alternatives (sequential,
adjacent pairs, 2 to 16 elements per thread) reproduce at most 61 of the 88 fp32 rows.
"""

from __future__ import annotations

import numpy as np

from normtheory.formats import FORMATS
from normtheory.precision.emulation.arith import Arith
from normtheory.registry import NormSpec, get_spec

TORCH_VERSION = "2.11.0+cu130"
DEVICE = "NVIDIA H200 (sm_90)"
VEC = 4
WARP = 32
WARPS = 4
THREADS = WARP * WARPS
AFFINES = {"layernorm": "weight_bias", "rmsnorm": "weight"}  # the recorded modes; others not claimed

_FP32 = Arith("fp32")


def _mirrored_spec(op: str) -> NormSpec:
    """The op's NormSpec, if torch's CUDA kernel for it is mirrored here (ValueError otherwise)."""
    if op not in AFFINES:
        raise ValueError(f"no CUDA near-mirror for {op!r}")
    return get_spec(op)


def _merge(own, other, centred: bool):
    """cuWelfordCombine(own, other): `other` (A) merged into `own` (B); without a mean (RMSNorm)
    only the sums of squares are added."""
    ar = _FP32
    mean_b, m2_b, count_b = own
    mean_a, m2_a, count_a = other
    count = count_a + count_b
    if not centred:
        return mean_b, ar.add(m2_a, m2_b), count
    some = count > 0
    delta = ar.sub(mean_b, mean_a)
    k = ar.div(1.0, np.where(some, count, 1.0))
    share_a, share_b = ar.mul(count_a, k), ar.mul(count_b, k)
    mean = ar.fma(share_a, mean_a, ar.mul(share_b, mean_b))
    m2 = ar.fma(ar.mul(ar.mul(delta, delta), count_a), share_b, ar.add(m2_a, m2_b))
    return np.where(some, mean, 0.0), np.where(some, m2, 0.0), count


def torch_cuda_stats(x, op: str):
    """(mean, var) per row as the vectorized CUDA kernel computes them (fp32 values)."""
    centred = _mirrored_spec(op).centred
    ar = _FP32
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    rows, d = x.shape
    if d % VEC:
        raise ValueError(f"the vectorized CUDA kernel needs d a multiple of {VEC}, got {d}")
    vectors = d // VEC
    passes = -(-vectors // THREADS)
    padded = np.zeros((rows, passes * THREADS, VEC))
    padded[:, :vectors] = x.reshape(rows, vectors, VEC)
    active = np.arange(passes * THREADS) < vectors
    mean = np.zeros((rows, THREADS))
    m2 = np.zeros((rows, THREADS))
    count = np.zeros((rows, THREADS))
    for p in range(passes):
        reads = active[p * THREADS:(p + 1) * THREADS]
        for element in range(VEC):
            value = padded[:, p * THREADS:(p + 1) * THREADS, element]
            if not centred:
                new_m2 = ar.fma(value, value, m2)
                new_mean = mean
            else:
                delta = ar.sub(value, mean)
                new_mean = ar.fma(delta, ar.div(1.0, count + 1.0), mean)
                new_m2 = ar.fma(delta, ar.sub(value, new_mean), m2)
            mean = np.where(reads, new_mean, mean)
            m2 = np.where(reads, new_m2, m2)
            count = count + reads
    state: tuple[np.ndarray, ...] = (mean, m2, count)
    for width, offsets in ((WARP, (16, 8, 4, 2, 1)), (WARPS, (2, 1))):
        if width == WARPS:  # lane 0 of every warp holds its warp's result
            state = tuple(s.reshape(rows, WARPS, WARP)[:, :, 0] for s in state)
        else:
            state = tuple(s.reshape(rows * WARPS, WARP) for s in state)
        for offset in offsets:
            lane = np.arange(width)
            source = np.where(lane + offset < width, lane + offset, lane)
            state = _merge(state, tuple(s[:, source] for s in state), centred)
        if width == WARP:
            state = tuple(s.reshape(rows, THREADS) for s in state)
    mean, m2, _ = (s[:, 0] for s in state)
    return mean, ar.div(m2, float(d))


def _moved(r: np.ndarray, ulps) -> np.ndarray:
    r32 = r.astype(np.float32)
    ulps = np.broadcast_to(np.asarray(ulps, dtype=np.int64), r32.shape)
    out = r32.copy()
    for step in range(int(np.abs(ulps).max(initial=0))):
        move = np.abs(ulps) > step
        out = np.where(move, np.nextafter(out, np.where(ulps > 0, np.inf, -np.inf).astype(np.float32)), out)
    return out.astype(np.float64)


def torch_cuda_forward(x, w, b=None, *, op: str, eps: float, format: str, rsqrt_ulps=0) -> np.ndarray:
    """The kernel's output with r = (correctly rounded rsqrt(v)) moved by `rsqrt_ulps` fp32 ulps
    (a scalar or one integer per row). Only the recorded affine mode of each op is offered."""
    ar = _FP32
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    with np.errstate(all="ignore"):
        mean, var = torch_cuda_stats(x, op)
        v = ar.add(var, ar.round(eps))
        r = _moved(ar.round(1.0 / np.sqrt(v)), rsqrt_ulps)[:, None]
        w = np.asarray(w, dtype=np.float64)
        if _mirrored_spec(op).centred:
            z = ar.fma(w, ar.mul(r, ar.sub(x, mean[:, None])), np.asarray(b, dtype=np.float64))
        else:
            z = ar.mul(w, ar.mul(r, x))
    return z if format == "fp32" else FORMATS[format].round_to_float64(z)


def rsqrt_offsets(x, w, b, y, *, op: str, eps: float, format: str, search: int = 2,
                  kernel: str = "torch") -> np.ndarray:
    """Per row, the rsqrt offset in ulps (smallest |k| <= search) for which the near-mirror of
    `kernel` ("torch" or "liger") reproduces the recorded row y bit for bit; NaN where none does."""
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    found = np.full(y.shape[0], np.nan)
    for k in sorted(range(-search, search + 1), key=abs):
        if kernel == "liger":
            out = liger_layer_norm(x, w, b, eps=eps, format=format, rsqrt_ulps=k)
        else:
            out = torch_cuda_forward(x, w, b, op=op, eps=eps, format=format, rsqrt_ulps=k)
        same = (out.astype(np.float32).view(np.int32) == y.astype(np.float32).view(np.int32)).all(axis=1)
        found = np.where(np.isnan(found) & same, k, found)
    return found


def _triton_block_sum(values: np.ndarray) -> np.ndarray:
    """tl.sum of a 64-element block over 4 warps (see the module docstring), fp32."""
    ar = _FP32
    partial = []
    for warp in (values[:, :WARP], values[:, WARP:]):
        for offset in (16, 8, 4, 2, 1):
            warp = ar.add(warp, warp[:, np.arange(WARP) ^ offset])
        partial.append(warp[:, 0])
    return ar.add(partial[0], partial[1])


def liger_layer_norm(x, w, b, *, eps: float, format: str, rsqrt_ulps=0) -> np.ndarray:
    """Liger's Triton LayerNorm forward at d = 64 with r = (correctly rounded rsqrt) moved by
    `rsqrt_ulps` fp32 ulps (scalar or per row)."""
    ar = _FP32
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.shape[1] != 2 * WARP:
        raise ValueError(f"the Liger near-mirror covers d = {2 * WARP} only, got {x.shape[1]}")
    with np.errstate(all="ignore"):
        mean = ar.div(_triton_block_sum(x), float(x.shape[1]))
        centred = ar.sub(x, mean[:, None])
        var = ar.div(_triton_block_sum(ar.mul(centred, centred)), float(x.shape[1]))
        r = _moved(ar.round(1.0 / np.sqrt(ar.add(var, ar.round(eps)))), rsqrt_ulps)[:, None]
        z = ar.fma(ar.mul(centred, r), np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return z if format == "fp32" else FORMATS[format].round_to_float64(z)
