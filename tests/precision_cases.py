"""Shared by the precision model's tests. Hypothesis inputs for the forward and backward
soundness tests: the structured families (|mean|/std up to 1e6, massive outliers, near overflow,
subnormals, constant and near-constant rows, heavy tails, sparse) and raw arrays with subnormals,
rescaled by powers of two and shifted; weights up to |w| = 64. And RecordingArith, which lists
the operand sums a reduction rounds (for the probabilistic bounds' partial-sum tests), and
draw_gradient, incoming gradients gy of the GRADIENT_SOURCES (the backward soundness tests)."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from normtheory.families import FAMILIES, draw_rows
from normtheory.formats import FORMATS
from normtheory.precision.emulation.arith import Arith


class RecordingArith(Arith):
    """Exact binary64 arithmetic that remembers every operand sum a rounding is applied to."""

    def __init__(self):
        super().__init__("fp64")
        self.sums = []

    def add(self, a, b):
        total = np.add(a, b)
        self.sums.append(np.atleast_2d(total))
        return total

    def fma(self, a, b, c):
        return self.add(np.multiply(a, b), c)


AFFINES = {"layernorm": ("none", "weight_bias", "offset_weight"), "rmsnorm": ("weight", "offset_weight"),
           "crmsnorm": ("none", "weight"), "l2normalize": ("none", "weight")}


def draw_input_rows(draw, op, *, max_n, max_rows):
    """(fmt, rng, source, x): rows of a family (or raw) in fp32, bf16 or fp16, and the seeded
    generator the caller keeps drawing from."""
    fmt = FORMATS[draw(st.sampled_from(["fp32", "bf16", "fp16"]))]
    n = draw(st.integers(1 if op == "crmsnorm" else 2, max_n))
    rows = draw(st.integers(1, max_rows))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    source = draw(st.sampled_from(sorted(FAMILIES) + ["raw"]))
    if source == "raw":
        top = min(fmt.max_finite, 2.0**20)
        raw = draw(arrays(np.float64, (rows, n), elements=st.floats(-top, top, allow_subnormal=True)))
    else:
        raw = draw_rows(source, rng, rows, n, fmt) * 2.0 ** draw(st.integers(-12, 12))
        shift = draw(st.sampled_from([0.0, 1e2, 1e4, 1e6]))  # |mean|/std up to 1e6
        raw = raw + shift * np.std(raw) * rng.choice([-1.0, 1.0])
    x = fmt.round_to_float64(np.clip(raw, -fmt.max_finite, fmt.max_finite), saturate=True)
    return fmt, rng, source, x


def draw_affine(draw, op, rng, fmt, n):
    """(w, b, eps, affine): weights up to |w| = 64 over 12 binades, a bias, eps and the mode."""
    w = fmt.round_to_float64(rng.uniform(-64, 64, n) * 2.0 ** -rng.integers(0, 12, n))
    b = fmt.round_to_float64(rng.standard_normal(n) * 4)
    eps = draw(st.sampled_from([1e-5, 1e-6, 1e-12, 0.25]))
    affine = draw(st.sampled_from(AFFINES[op]))
    return w, b, eps, affine


GRADIENT_SOURCES = ("normal", "heavy_tail", "sparse", "tiny", "huge")


def draw_gradient(source, rng, shape, fmt):
    """Incoming gradients gy of one source (GRADIENT_SOURCES), values of `fmt`."""
    if source == "normal":
        raw = rng.standard_normal(shape)
    elif source == "heavy_tail":
        raw = rng.standard_t(2.0, size=shape)
    elif source == "sparse":
        raw = np.where(rng.random(shape) < 0.9, 0.0, rng.standard_normal(shape))
    elif source == "tiny":
        raw = 2.0 ** rng.uniform(fmt.emin - fmt.precision + 1, fmt.emin + 2, size=shape) * rng.choice([-1.0, 1.0], shape)
    else:  # large gradients: products with |w| up to 64 and sums over the row stay finite in fp32
        raw = rng.standard_normal(shape) * min(fmt.max_finite / 2**12, 2.0**20)
    return fmt.round_to_float64(np.clip(raw, -fmt.max_finite, fmt.max_finite), saturate=True)
