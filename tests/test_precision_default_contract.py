"""The `default` contract allows FMA contraction and does not require it: its tolerance covers the
bound of every model of `models.DEFAULT_FAMILY` both with and without contraction (fma=True and
fma=False), element by element, for y, gx, gw and gb, in both kinds.

Seeded rows of the structured families (normtheory.families). A kernel that does not contract
(eager CPU code, nvcc --fmad=false) rounds the products φ·K, ĝ·n̂ and Welford's δ̂·â on their own;
its bound is up to a few per cent above the contracted one here, so a tolerance built from the
fma=True bounds alone fails this test."""

import numpy as np
import pytest

from normtheory.families import draw_rows
from normtheory.formats import FORMATS
from normtheory.precision import QUANTITIES, backward_bound, forward_bound, tolerances
from normtheory.precision.models import DEFAULT_FAMILY, MODELS

FAMILIES = ("normal", "offset_1e4", "outlier", "tiny", "near_constant", "constant")
OPS = ("layernorm", "rmsnorm", "crmsnorm")
EPS = 1e-5
# (rows, n): rows ≤ 32 and n ≤ 32 (one step per lane: fused and unfused sums are the same
# mathematically), and both above 32 (products the lanes add after their first)
SHAPES = {"bf16": (24, 48), "fp16": (40, 20), "fp32": (48, 96)}


def _case(family: str, op: str, fmt_name: str, seed: int):
    fmt = FORMATS[fmt_name]
    rng = np.random.default_rng(seed)
    rows, n = SHAPES[fmt_name]
    x = draw_rows(family, rng, rows, n, fmt)
    gy = fmt.round_to_float64(rng.standard_normal((rows, n)))
    w = fmt.round_to_float64(1 + 0.25 * rng.standard_normal(n))
    b = fmt.round_to_float64(0.5 * rng.standard_normal(n))
    affine = "weight_bias" if op == "layernorm" else "weight"
    return fmt, x, gy, w, b, affine


def _model_bounds(op, fmt, x, gy, w, b, affine, *, model, kind) -> dict[str, np.ndarray]:
    """y, gx, gw, gb of one model, each from its own bound function (not through `tolerances`)."""
    y = forward_bound(op, x, w, b, model=model, eps=EPS, affine=affine, out_format=fmt, kind=kind).total
    grads = backward_bound(op, x, gy, w, b, model=model, eps=EPS, affine=affine, grad_format=fmt, kind=kind)
    return {"y": y, "gx": grads.gx, "gw": grads.gw, "gb": grads.gb}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("family", FAMILIES)
def test_default_tolerance_covers_fused_and_unfused_kernels(family, op):
    seed = FAMILIES.index(family) * 10 + OPS.index(op)
    exceeded = 0
    for fmt_name in SHAPES:
        fmt, x, gy, w, b, affine = _case(family, op, fmt_name, seed)
        for kind in ("worst", "probabilistic"):
            tol = tolerances(op, x, w, b, format=fmt, eps=EPS, affine=affine, kind=kind, gy=gy)
            for name in DEFAULT_FAMILY:
                fused = _model_bounds(op, fmt, x, gy, w, b, affine, model=MODELS[name], kind=kind)
                unfused = _model_bounds(op, fmt, x, gy, w, b, affine, model=MODELS[name].variant(fma=False), kind=kind)
                for q in QUANTITIES:
                    where = (fmt_name, kind, name, q)
                    assert (tol[q] >= fused[q]).all(), where
                    assert (tol[q] >= unfused[q]).all(), where
                    exceeded += int((unfused[q] > fused[q]).sum())
    assert exceeded > 0  # the case distinguishes the two: an unfused bound above the fused one
