"""Hypothesis strategies for normalization-kernel inputs, for your own `@given` tests.

    from hypothesis import given
    from normtheory import strategies as nst

    @given(x=nst.rows(n=256, format="bf16"), w=nst.weights(n=256, format="bf16"))
    def test_my_rms_norm(x, w):
        y = my_rms_norm(torch.tensor(x).bfloat16(), torch.tensor(w).bfloat16(), eps=1e-6)
        assert_close_to_exact(y, op="rmsnorm", x=torch.tensor(x).bfloat16(), weight=..., eps=1e-6)

Every array is float64 holding values exactly representable in the requested format (convert
with `torch.tensor(a).to(dtype)` or `a.astype(ml_dtypes.bfloat16)`: exact). Arrays are drawn
from a seed that hypothesis chooses, so an example replays exactly and hypothesis shrinks
toward small seeds, few rows and plain families. The families are normtheory.families':
normal, offset (|mean|/std = 1e2, 1e4, 1e6: cancellation), outlier (a few massive
activations), heavy tail, near overflow, tiny (subnormal), constant, near-constant, sparse;
`rows` can add its own |mean|/std offset and outliers on top of any family.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from normtheory.families import FAMILIES
from normtheory.formats import as_format
from normtheory.registry import FUSED_OPS, get_spec

FORMAT_NAMES = ("bf16", "fp16", "fp32")
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def formats(names=FORMAT_NAMES) -> st.SearchStrategy[str]:
    """Format names (bf16, fp16, fp32 by default; any of normtheory.formats.FORMATS)."""
    for name in names:
        as_format(name)  # UsageError for unknown names, at definition time
    return st.sampled_from(tuple(names))


def families(names=None) -> st.SearchStrategy[str]:
    """Input family names of normtheory.families (all of them by default), plainest first."""
    chosen = tuple(FAMILIES) if names is None else tuple(names)
    unknown = [name for name in chosen if name not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    return st.sampled_from(chosen)


def _as_strategy(value, default):
    if value is None:
        return default
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


@st.composite
def rows(draw, n, *, count=None, format="bf16", family=None, offset=None, outliers=None, binade=None) -> np.ndarray:
    """(count, n) float64 arrays exact in `format`.

    n, count, format, family: values or strategies (count 1..8 and every family by default).
    offset: |mean|/std added to each row (a strategy, e.g. st.floats(1, 1e6); default none).
    outliers: how many massive entries (1e2 .. 1e4 × the row's spread) per row (default none).
    binade: power of two the rows are scaled by (default 0: as the family draws them).
    """
    width = draw(_as_strategy(n, None))
    fmt = as_format(draw(_as_strategy(format, None)))
    how_many = draw(_as_strategy(count, st.integers(1, 8)))
    name = draw(_as_strategy(family, families()))
    rng = np.random.default_rng(draw(SEEDS))
    values = FAMILIES[name](rng, how_many, width, fmt) * 2.0 ** draw(_as_strategy(binade, st.just(0)))
    spread = np.maximum(values.std(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    ratio = draw(_as_strategy(offset, st.just(0.0)))
    values = values + ratio * spread * rng.choice([-1.0, 1.0], size=(how_many, 1))
    for _ in range(draw(_as_strategy(outliers, st.just(0)))):
        column = rng.integers(0, width, size=how_many)
        magnitude = 10.0 ** rng.uniform(2, 4, size=how_many) * spread[:, 0] * rng.choice([-1.0, 1.0], size=how_many)
        values[np.arange(how_many), column] = magnitude
    with np.errstate(over="ignore", invalid="ignore"):
        return fmt.round_to_float64(values, saturate=True)


@st.composite
def weights(draw, n, *, format="bf16", kind=None) -> np.ndarray:
    """(n,) float64 weights exact in `format`, of a kind: ones, near_one (1 + 0.1·N(0,1), as
    trained LayerNorm/RMSNorm gains), normal (N(0,1): signs and zeros), large (|w| up to 64),
    offset (0.1·N(0,1): Gemma's (1 + w) parametrization)."""
    width = draw(_as_strategy(n, None))
    fmt = as_format(draw(_as_strategy(format, None)))
    name = draw(_as_strategy(kind, st.sampled_from(("near_one", "ones", "normal", "large", "offset"))))
    rng = np.random.default_rng(draw(SEEDS))
    values = {
        "ones": lambda: np.ones(width),
        "near_one": lambda: 1.0 + 0.1 * rng.standard_normal(width),
        "normal": lambda: rng.standard_normal(width),
        "large": lambda: 2.0 ** rng.uniform(-6, 6, width) * rng.choice([-1.0, 1.0], width),
        "offset": lambda: 0.1 * rng.standard_normal(width),
    }[name]()
    return fmt.round_to_float64(values, saturate=True)


@st.composite
def norm_inputs(draw, *, n, op="rmsnorm", format="bf16", backward=True, **row_options) -> dict:
    """x, weight, bias (LayerNorm only) and gy (when `backward`) for one call, all in the
    format named by the dict's "format" entry."""
    fmt_name = draw(_as_strategy(format, None))
    x = draw(rows(n, format=fmt_name, **row_options))
    width = x.shape[1]
    inputs = {"x": x, "weight": draw(weights(width, format=fmt_name)), "bias": None, "gy": None, "format": fmt_name}
    if get_spec(FUSED_OPS.get(op, op)).default_affine == "weight_bias":  # LayerNorm's bias
        inputs["bias"] = draw(weights(width, format=fmt_name, kind="normal"))
    if backward:
        inputs["gy"] = draw(rows(width, count=x.shape[0], format=fmt_name, family="normal"))
    return inputs
