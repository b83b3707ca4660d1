"""The layout of a model's reductions, once: the emulated kernels run it, the bounds read it.

Lane t (0 ≤ t < L) accumulates elements t, t + L, t + 2L, ... sequentially, then the L lane
results are combined by a butterfly (lane t with lane t + L/2, then t + L/4, ...), L padded with
zeros to a power of two (models.py). emulation/reductions.py runs this layout with a rounding
after every operation; the bounds need the exact operand sums w_k that each of its roundings is
applied to (`operand_sums`): the partial sums of the martingale arguments (toolkit/sums.py) and
the drift of computed partial sums.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from normtheory.formats import FORMATS
from normtheory.precision.models import Model


def lane_slices(n: int, lanes: int) -> Iterator[slice]:
    """Step j of every lane reads columns j*L ... j*L + L - 1 (lane t reads column j*L + t)."""
    for start in range(0, n, lanes):
        yield slice(start, min(start + lanes, n))


def padded_width(lanes: int) -> int:
    """The butterfly's width: `lanes` rounded up to a power of two."""
    return 1 << (lanes - 1).bit_length()


def pad_lanes(values: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """`values` (lanes along the last axis) padded with `fill` to the butterfly's width."""
    extra = padded_width(values.shape[-1]) - values.shape[-1]
    if extra == 0:
        return values
    pad = np.full(values.shape[:-1] + (extra,), fill)
    return np.concatenate([values, pad], axis=-1)


def butterfly(values: np.ndarray, combine: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Combine lanes t and t + L/2, then t + L/4, ... down to one column (L a power of two)."""
    while values.shape[1] > 1:
        half = values.shape[1] // 2
        values = combine(values[:, :half], values[:, half:])
    return values[:, 0]


def operand_sums(values: np.ndarray, model: Model, *, first_step_rounds: bool = False) -> np.ndarray:
    """(rows, K): Σ of `values` over the terms below every rounding of the model's tree sum along
    axis 1 — the exact operand sum w_k that rounding k is applied to when the terms are exact.
    Lane steps after each lane's first (all of them when `first_step_rounds`: a fused product
    rounds already at the first step), then every butterfly combine. A lane shorter than the
    others counts its padded steps (adding 0 rounds nothing: an upper bound)."""
    rows, n = values.shape
    lanes = model.lane_count(n)
    steps = -(-n // lanes)
    padded = np.zeros((rows, steps * lanes))
    padded[:, :n] = values
    partial = np.cumsum(padded.reshape(rows, steps, lanes), axis=1)
    out = [partial[:, (0 if first_step_rounds else 1):, :].reshape(rows, -1)]
    level = pad_lanes(partial[:, -1, :])
    while level.shape[1] > 1:
        half = level.shape[1] // 2
        level = level[:, :half] + level[:, half:]
        out.append(level)
    return np.concatenate(out, axis=1)


def tree_partial_sums(values: np.ndarray, model: Model) -> tuple[np.ndarray, np.ndarray]:
    """(s, a): the exact partial sums s_k that the model's tree rounds, and the partial sums a_k
    of |values| below each, as (rows, K) arrays (`operand_sums` of values and of |values|)."""
    return operand_sums(values, model), operand_sums(np.abs(values), model)


def partial_sums_norm(values: np.ndarray, model: Model) -> np.ndarray:
    """sqrt(Σ_k s_k²) per row over the exact partial sums s_k that the model's tree rounds."""
    return np.sqrt((operand_sums(values, model) ** 2).sum(axis=1))


def rounding_margin(model: Model, n: int) -> float:
    """(1 + u)^m: how far above its exact value a computed sum of n nonnegative terms can be, m the
    roundings on its deepest path (the square or product, the lane steps, two per merge level,
    the scaling: m = h + t + 4, h the reduction depth and t the merge levels; bounds/domains.py)."""
    depth = model.reduction_depth(n) + model.tree_levels(n) + 4
    return (1.0 + FORMATS[model.acc].unit_roundoff) ** depth
