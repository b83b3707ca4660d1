"""The comparator's grouped bounds (one precision.tolerances call for y with gx, and for gw with
gb) are bit for bit the per-quantity bounds it computed before, for every kind of problem the
grouping treats differently: formats that differ between outputs, the llama semantics (another
contract for the gradients), ulp:K (exact values per quantity), RMSNorm without a bias."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from normtheory.testing.judge import bound, bound_group, bound_groups  # noqa: E402
from normtheory.testing.problem import parse_problem  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _problem(op, fmt, *, grad_fmt=None, w_fmt=None, contract="default", semantics="exact", rows=24, d=96):
    gen = torch.Generator().manual_seed(7)
    dtype, w_dtype = DTYPES[fmt], DTYPES[w_fmt or fmt]
    x = (3 * torch.randn(rows, d, generator=gen) + 0.5).to(dtype)
    x[0] = x[0] * 1e-3 + 20  # a row with a large mean: Welford's terms matter
    w = (1 + 0.1 * torch.randn(d, generator=gen)).to(w_dtype)
    b = torch.randn(d, generator=gen).to(w_dtype) if op == "layernorm" else None
    gy = torch.randn(rows, d, generator=gen).to(dtype)
    g = DTYPES[grad_fmt or fmt]
    actual = {"y": torch.randn(rows, d, generator=gen).to(dtype), "gx": torch.zeros(rows, d, dtype=g),
              "gw": torch.zeros(d, dtype=w_dtype)}
    if b is not None:
        actual["gb"] = torch.zeros(d, dtype=w_dtype if grad_fmt is None else g)
    return parse_problem(actual, op=op, x=x, weight=w, bias=b, residual=None, gy=gy, eps=1e-5, affine=None,
                         eps_mode="inside", p=None, contract=contract, scale=None, scaling=None, semantics=semantics)


def _exact(problem):
    """Stand-ins for the exact values ulp:K reads (any finite values of the right shapes)."""
    rng = np.random.default_rng(0)
    return {q: rng.standard_normal(problem.actual[q].values.shape) for q in problem.actual}


CASES = [
    ("layernorm", dict(fmt="bf16")),
    ("layernorm", dict(fmt="fp16", w_fmt="fp32")),
    ("layernorm", dict(fmt="bf16", grad_fmt="fp32")),  # gx in another format than h: y and gx apart
    ("layernorm", dict(fmt="bf16", contract="model:welford")),
    ("layernorm", dict(fmt="bf16", contract="ulp:2")),
    ("rmsnorm", dict(fmt="bf16")),
    ("rmsnorm", dict(fmt="bf16", semantics="llama")),  # y default, gradients model:llama: apart
    ("rmsnorm", dict(fmt="fp32", w_fmt="bf16")),
]


@pytest.mark.parametrize("op, kwargs", CASES)
def test_grouped_bounds_equal_the_per_quantity_bounds(op, kwargs):
    problem = _problem(op, **kwargs)
    quantities = [q for q in ("y", "gx", "gw", "gb") if q in problem.actual]
    exact = _exact(problem) if kwargs.get("contract", "").startswith("ulp") else None
    groups = bound_groups(problem, quantities)
    assert sorted(q for group in groups for q in group) == sorted(quantities)
    rows = slice(3, 17)
    for group in groups:
        row_local = group[0] in ("y", "gx")
        block = rows if row_local else slice(None)
        sub = None if exact is None else {q: exact[q][block] if row_local else exact[q] for q in group}
        got = bound_group(problem, group, sub, block)
        for q in group:
            want = bound(problem, q, None if sub is None else sub[q], problem.actual[q].fmt.name, block)
            assert np.array_equal(got[q], want, equal_nan=True), (op, kwargs, q)


def test_grouping_pairs_what_it_can_and_separates_what_it_must():
    assert bound_groups(_problem("layernorm", fmt="bf16"), ["y", "gx", "gw", "gb"]) == [("y", "gx"), ("gw", "gb")]
    # gx and gb in fp32, h and gw in bf16: nothing shares a format
    assert bound_groups(_problem("layernorm", fmt="bf16", grad_fmt="fp32"), ["y", "gx", "gw", "gb"]) == \
        [("y",), ("gx",), ("gw",), ("gb",)]
    assert bound_groups(_problem("rmsnorm", fmt="bf16", semantics="llama"), ["y", "gx", "gw"]) == \
        [("y",), ("gx",), ("gw",)]


def test_a_grouping_the_rules_refuse_would_change_a_bound():
    """Why the rules exist (and that the equality above can fail): gb bounded in gw's format,
    or llama's gradients under y's contract, are other bounds."""
    problem = _problem("layernorm", fmt="bf16", grad_fmt="fp32")
    forced = bound_group(problem, ("gw", "gb"), None)
    assert not np.array_equal(forced["gb"], bound(problem, "gb", None, "fp32"))
    problem = _problem("rmsnorm", fmt="bf16", semantics="llama")
    forced = bound_group(problem, ("y", "gx"), None, slice(3, 17))
    assert not np.array_equal(forced["gx"], bound(problem, "gx", None, "bf16", slice(3, 17)))
