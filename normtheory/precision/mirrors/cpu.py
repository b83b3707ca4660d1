"""Mirrors: emulations that are bit-identical to one real kernel, not models of a class.

Everything else in `precision/` (emulation/forward.py, emulation/backward.py, the models of models.py) is a
model of a class of kernels. The functions here each claim to reproduce one kernel of one
build bit for bit, and tests/test_precision_mirrors.py checks that claim against the kernel:

    torch_rms_norm      torch.nn.functional.rms_norm, torch 2.13.0+cpu, x86-64
    torch_layer_norm    torch.nn.functional.layer_norm (ATen's CPU LayerNorm kernel), same build
    hf_llama_rms_norm   Hugging Face LlamaRMSNorm's composite (normtheory.kernels.eager)

(mirrors/cuda.py holds NEAR-mirrors of CUDA kernels: bit-identical given the hardware's rsqrt.)

Which build: the wheel dispatches per CPU capability (AVX512 on the machine this was measured
on), but ATen registers its AVX512 builds only for kernels that opt in; the sum reduction and
the LayerNorm moments do not, so under both the AVX2 and the AVX512 capability they run their
AVX2 builds: 8 fp32 lanes (16 lanes for bf16/fp16 loads, split into two fp32 halves).
`MIRRORED_CAPABILITIES` lists what was checked; the DEFAULT (no SIMD) build is not claimed.

The order of every reduction, and which products are fused with the following addition (an
FMA), was established by reading the algorithm in PyTorch's sources (SumKernel.cpp,
moments_utils.h, layer_norm_kernel.cpp, the CPU `rms_norm` composite) and then pinning down,
by comparison with the kernel's outputs, what the compiler made of it: the FMA contractions
below are facts about this binary, not about the C++ source.

Sum (the `mean` of rms_norm), per row of n fp32 terms; every addition rounded to fp32:
    n >= 8: the row is read as n // 8 vectors of 8 lanes; the vectors go to 4 interleaved
        accumulators (vector v to accumulator v mod 4) through a 4-level cascade (below);
        the 4 accumulators are added 0 + 1, + 2, + 3 (vectors beyond 4·(n // 32) are added
        to accumulator 0 first); then a scalar total starts at 0, adds the n mod 8 tail
        elements in order, then the 8 lanes of the vector sum in lane order.
    n < 8: the same 4-accumulator cascade over single elements (no lanes, no scalar total).
    Cascade over `size` items with step 2^p, p = max(4, ceil(log2 size) // 4): blocks of 2^p
    items are summed into level 0; after each block level 0 is added into level 1 and
    cleared, and the carry moves on to level j + 1 only when the item count is a multiple of
    2^(p·j); leftover items go into level 0; finally level 0 += level 1, += level 2, += level 3.
RMSNorm (fp32 inside; bf16/fp16 inputs are upcast exactly):
    q = fl(Σ fl(x²) / d); r = fl(1 / fl(sqrt(fl(q + fl32(eps))))); y = fl(x·r), then fl(y·w);
    bf16/fp16: one more rounding of that fp32 value to the input format.
HF Llama RMSNorm: the same r; n = fl(x·r) rounded to the input format, then fl_in(w·n).
LayerNorm moments (cascade Welford, Chan merges), per row:
    chunks of up to 16 vectors; within a chunk each lane runs Welford with c_j = fl(1/j):
        δ = fl(x − m); m = fma(δ, c_j, m); M = fma(δ, fl(x − m), M)
    the chunk is merged into a stack of partial results (a binary counter over chunks, as in
    pairwise summation), the stack is merged into its bottom, then the n mod 8 tail elements
    run scalar Welford (m += fl(δ/k), M += δ·fl(x − m): two roundings for fp32 and bf16 rows, one
    FMA for fp16 rows — the template's instantiations were compiled differently), and the 8 lanes are merged
    into that scalar result in lane order. Merge of (na, ma, Ma) into (nb, mb, Mb), n = na + nb,
    c = fl(na/n), δ = fl(ma − mb):
        vector merge: m = fl(mb + fl(c·δ));      M = fma(fl(δ·c), fl(δ·nb), fl(Mb + Ma))
        scalar merge: m = fma(c, δ, mb);         M = fl(Mb + fma(fl(fl(δ·δ)·c), nb, Ma))
    var = fl(M / d); r = fl(1 / fl(sqrt(fl(var + fl32(eps))))) (no clamp at zero)
LayerNorm output, fp32: t = fl(x − μ); n = fl(t·r); weight and bias: fma(n, w, b); weight:
    fl(n·w) + 0; bias: fma(t, r, b); neither: n + 0 (the + 0 turns a −0 into +0).
LayerNorm output, bf16/fp16 (moments with 16-element loads split into two 8-lane halves): s = fl(−r·μ);
    z = fma(fma(x, r, s), w, b) with w = 1, b = 0 where absent; one rounding to the format.

Arithmetic is `Arith("fp32")` (binary64 carriers, every operation rounded once to fp32, FMA
exact): subnormals are kept, as torch's CPU kernels keep them (no FTZ/DAZ by default).
"""

from __future__ import annotations

import numpy as np

from normtheory.formats import FORMATS
from normtheory.precision.emulation.arith import Arith

TORCH_VERSION = "2.13.0+cpu"
MIRRORED_CAPABILITIES = ("AVX2", "AVX512")  # both run the AVX2 builds of sum and LayerNorm
LANES = 8  # fp32 lanes of an AVX2 vector
ILP = 4  # interleaved accumulators of the sum kernel
LEVELS = 4  # cascade levels of the sum kernel
CHUNK = 16  # vectors per Welford chunk of the LayerNorm moments

_FP32 = Arith("fp32")
FLOAT32_EPS = 2.0**-23  # torch's rms_norm default eps: std::numeric_limits<float>::epsilon()


def _ceil_log2(size: int) -> int:
    """ATen's utils::CeilLog2: 1 for size <= 2 (so a cascade is never shallower than that)."""
    return 1 if size <= 2 else int(size - 1).bit_length()


# --- the sum kernel's order, written once over an abstract `add` -------------------------


def _cascade(item, size: int, add, zero):
    """The 4-level cascade over items item(0) ... item(size - 1) (see the module docstring)."""
    power = max(4, _ceil_log2(size) // LEVELS)
    step = 1 << power
    acc = [zero() for _ in range(LEVELS)]
    i = 0
    while i + step <= size:
        for _ in range(step):
            acc[0] = add(acc[0], item(i))
            i += 1
        for level in range(1, LEVELS):
            acc[level] = add(acc[level], acc[level - 1])
            acc[level - 1] = zero()
            if i & ((step - 1) << (level * power)):
                break
    for index in range(i, size):
        acc[0] = add(acc[0], item(index))
    for level in range(1, LEVELS):
        acc[0] = add(acc[0], acc[level])
    return acc[0]


def _row_sum(values: np.ndarray, add, zero):
    """Sum over axis 1 of values (rows, size, ...): ILP interleaved accumulators by cascade."""
    rows, size = values.shape[:2]
    groups = size // ILP
    grouped = values[:, : groups * ILP].reshape((rows, groups, ILP) + values.shape[2:])
    partial = _cascade(lambda g: grouped[:, g], groups, add, lambda: zero(grouped.shape[:1] + grouped.shape[2:]))
    total = partial[:, 0]
    for index in range(groups * ILP, size):
        total = add(total, values[:, index])
    for k in range(1, ILP):
        total = add(total, partial[:, k])
    return total


def _sum_in_order(terms: np.ndarray, add, zero):
    rows, n = terms.shape
    if n < LANES:
        return _row_sum(terms, add, zero)
    vectors = n // LANES
    lanes = _row_sum(terms[:, : vectors * LANES].reshape(rows, vectors, LANES), add, zero)
    total = zero((rows,))
    for index in range(vectors * LANES, n):
        total = add(total, terms[:, index])
    for lane in range(LANES):
        total = add(total, lanes[:, lane])
    return total


def torch_cpu_sum(terms) -> np.ndarray:
    """Σ over the last axis of fp32 values (float64 carriers) in the order of torch's CPU sum."""
    terms = np.atleast_2d(np.asarray(terms, dtype=np.float64))
    return _sum_in_order(terms, _FP32.add, np.zeros)


def torch_cpu_sum_depth(n: int) -> int:
    """The most roundings any term of an n-term torch CPU sum goes through (additions into an
    exact zero do not round). Computed by running the same order on depths instead of values."""

    def add(a, b):
        return np.where(a < 0, b, np.where(b < 0, a, np.maximum(a, b) + 1))

    depth = _sum_in_order(np.zeros((1, n)), add, lambda shape: np.full(shape, -1.0))
    return int(depth[0])


# --- RMSNorm -------------------------------------------------------------------------------


def _rsqrt_of_mean_square(x: np.ndarray, eps: float) -> np.ndarray:
    ar = _FP32
    mean_square = ar.div(torch_cpu_sum(ar.mul(x, x)), float(x.shape[1]))
    return ar.div(1.0, ar.sqrt(ar.add(mean_square, ar.round(eps))))


def _loaded(x, fmt):
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if not FORMATS[fmt].is_representable(x[np.isfinite(x)]).all():
        raise ValueError(f"x holds values that are not {fmt} values")
    return x


def torch_rms_norm(x, w=None, *, eps: float | None, format: str = "fp32") -> np.ndarray:
    """torch.nn.functional.rms_norm(x, (d,), w, eps) of torch 2.13 CPU, bit for bit, for rows x
    of `format` values (fp32, bf16 or fp16; w in the same format). float64 array of the output."""
    x = _loaded(x, format)
    with np.errstate(all="ignore"):
        r = _rsqrt_of_mean_square(x, FLOAT32_EPS if eps is None else eps)
        y = _FP32.mul(x, r[:, None])
        if w is not None:
            y = _FP32.mul(y, np.asarray(w, dtype=np.float64))
    return y if format == "fp32" else FORMATS[format].round_to_float64(y)


def hf_llama_rms_norm(x, w=None, *, eps: float, format: str = "fp32") -> np.ndarray:
    """normtheory.kernels.eager.llama_rms_norm (HF LlamaRMSNorm) on torch 2.13 CPU, bit for bit:
    the normalized value is rounded to the input format before the product with the weight."""
    x = _loaded(x, format)
    out = FORMATS[format]
    with np.errstate(all="ignore"):
        normalized = out.round_to_float64(_FP32.mul(x, _rsqrt_of_mean_square(x, eps)[:, None]))
        if w is None:
            return normalized
        # a product of two p <= 11 values is exact in binary64: one rounding, as torch does it
        return out.round_to_float64(normalized * np.asarray(w, dtype=np.float64))


# --- LayerNorm -----------------------------------------------------------------------------


def _merge(count_add, mean_add, m2_add, count, mean, m2, vector: bool):
    """Chan's merge of (count_add, mean_add, m2_add) into (count, mean, m2), as compiled."""
    ar = _FP32
    total = count + count_add
    c = 0.0 if total == 0 else ar.div(float(count_add), float(total))
    delta = ar.sub(mean_add, mean)
    if vector:
        mean = ar.add(mean, ar.mul(c, delta))
        m2 = ar.fma(ar.mul(delta, c), ar.mul(delta, float(count)), ar.add(m2, m2_add))
    else:
        mean = ar.fma(c, delta, mean)
        m2 = ar.add(m2, ar.fma(ar.mul(ar.mul(delta, delta), c), float(count), m2_add))
    return total, mean, m2


def _welford_chunk(vectors, count_in_chunk, reciprocals):
    """Per-lane Welford over `count_in_chunk` vectors (rows, LANES) from vectors(j)."""
    ar = _FP32
    mean = m2 = None
    for j in range(count_in_chunk):
        x = vectors(j)
        if mean is None:
            mean = m2 = np.zeros_like(x)
        delta = ar.sub(x, mean)
        mean = ar.fma(delta, reciprocals[j], mean)
        m2 = ar.fma(delta, ar.sub(x, mean), m2)
    return mean, m2


# Whether the scalar tail's M update is one FMA differs between the template's instantiations
# in this binary (found by comparison with the kernel: fp16 rows of 9 or 15 elements).
_TAIL_FMA = {"fp32": False, "bf16": False, "fp16": True}


def torch_cpu_moments(x, *, format: str = "fp32"):
    """(mean, biased variance) per row of ATen's CPU RowwiseMoments on fp32 carriers, for rows
    of `format` values. fp32 rows are loaded as one 8-lane vector at a time; bf16/fp16 rows 16
    elements at a time, whose two halves run separate Welford accumulators, merged in turn."""
    ar = _FP32
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    halves = 1 if format == "fp32" else 2
    rows, d = x.shape
    width = LANES * halves
    n = d // width
    chunks = -(-n // CHUNK)
    depth = _ceil_log2(chunks)
    zeros = np.zeros((rows, LANES))
    stack = [(0, zeros, zeros) for _ in range(depth)]
    reciprocals = [ar.div(1.0, float(j + 1)) for j in range(CHUNK)]
    for chunk in range(chunks):
        count = min(CHUNK, n - chunk * CHUNK)
        for half in range(halves):
            def load(j, chunk=chunk, half=half):
                start = (chunk * CHUNK + j) * width + half * LANES
                return x[:, start:start + LANES]
            mean, m2 = _welford_chunk(load, count, reciprocals)
            stack[0] = _merge(count, mean, m2, *stack[0], vector=True)
        carry = chunk + 1
        level = 1
        while level < depth and carry & 1 == 0:
            stack[level] = _merge(*stack[level - 1], *stack[level], vector=True)
            stack[level - 1] = (0, zeros, zeros)
            carry >>= 1
            level += 1
    for level in range(1, depth):
        stack[0] = _merge(*stack[level], *stack[0], vector=True)
    count, mean, m2 = 0, np.zeros(rows), np.zeros(rows)
    for index in range(n * width, d):
        value = x[:, index]
        delta = ar.sub(value, mean)
        count += 1
        mean = ar.add(mean, ar.div(delta, float(count)))
        m2 = ar.mul_add(delta, ar.sub(value, mean), m2, _TAIL_FMA[format])
    per_lane = n * width // LANES
    for lane in range(LANES):
        count, mean, m2 = _merge(per_lane, stack[0][1][:, lane], stack[0][2][:, lane], count, mean, m2,
                                 vector=False)
    return mean, ar.div(m2, float(d))


def torch_layer_norm(x, w=None, b=None, *, eps: float, format: str = "fp32") -> np.ndarray:
    """torch.nn.functional.layer_norm(x, (d,), w, b, eps) of torch 2.13 CPU, bit for bit, for
    rows x of `format` values (fp32, bf16 or fp16; w and b in the same format or None).
    float64 array of the output (values of `format`)."""
    x = _loaded(x, format)
    ar = _FP32
    w = None if w is None else np.asarray(w, dtype=np.float64)
    b = None if b is None else np.asarray(b, dtype=np.float64)
    with np.errstate(all="ignore"):
        mean, var = torch_cpu_moments(x, format=format)
        r = ar.div(1.0, ar.sqrt(ar.add(var, ar.round(eps))))[:, None]
        if format != "fp32":  # the reduced-precision kernel: shift folded into one FMA
            shift = ar.mul(-r, mean[:, None])
            z = ar.fma(ar.fma(x, r, shift), 1.0 if w is None else w, 0.0 if b is None else b)
            return FORMATS[format].round_to_float64(z)
        centred = ar.sub(x, mean[:, None])
        normalized = ar.mul(centred, r)
        if w is not None and b is not None:
            return ar.fma(normalized, w, b)
        if b is not None:
            return ar.fma(centred, r, b)
        # the kernel adds a zero bias (an FMA with +0): exact, except that -0 becomes +0
        return ar.add(normalized if w is None else ar.mul(normalized, w), 0.0)
