"""Discrimination: the `default` tolerance rejects each defective kernel on some family and
accepts the careful ones (two-pass and Welford in fp32) on every family."""

import numpy as np
import pytest

from normtheory.families import FAMILIES, draw_rows
from normtheory.formats import FORMATS
from normtheory.precision import tolerance
from normtheory.precision.emulation.forward import forward
from normtheory.precision.measure import absolute_errors, exact_outputs
from normtheory.precision.models import MODELS

N = 256


def _worst_ratio(model_name, op, fmt_name, family, affine, out, seed=0, weight_scale=4.0, need_finite=True):
    fmt = FORMATS[fmt_name]
    rng = np.random.default_rng(seed)
    x = draw_rows(family, rng, 2, N, fmt)
    w = fmt.round_to_float64(rng.standard_normal(N) * weight_scale)
    b = fmt.round_to_float64(rng.standard_normal(N))
    eps = 1e-5
    exact = exact_outputs(op, x, w, b, eps=eps, affine=affine)["y"]  # eps inside: the contract's formula
    y = forward(op, x, w, b, model=MODELS[model_name], eps=eps, affine=affine, out_format=out)
    tol = tolerance(op, x, w, b, format=fmt_name, out_format=out, eps=eps, affine=affine)
    err = absolute_errors(y, exact)
    finite = np.isfinite(tol)
    if need_finite:
        assert finite.all(), "the default contract must give a finite tolerance on these inputs"
    # an infinite tolerance is "no claim" (Welford's bound gives up at |mean|/std ~ 1e6 in fp32)
    return float(np.max(err[finite] / tol[finite], initial=0.0))


# (defective model, op, input format, family, affine, output format, weight scale)
DEFECTS = [
    ("onepass", "layernorm", "fp32", "offset_1e4", "weight_bias", "fp32", 4.0),
    ("fp16_accum", "rmsnorm", "fp16", "offset_1e2", "weight", "fp32", 4.0),
    ("truncate", "rmsnorm", "bf16", "normal", "weight", "bf16", 4.0),
    ("llama", "rmsnorm", "bf16", "normal", "weight", "bf16", 4.0),
    ("eps_outside", "rmsnorm", "fp32", "tiny", "weight", "fp32", 4.0),
    ("eps_outside", "layernorm", "fp32", "near_constant", "weight_bias", "fp32", 4.0),
    ("offset_bf16", "rmsnorm", "fp32", "normal", "offset_weight", "fp32", 0.05),
    ("approx_rsqrt", "rmsnorm", "fp32", "normal", "weight", "fp32", 4.0),
]


@pytest.mark.parametrize("model,op,fmt,family,affine,out,scale", DEFECTS, ids=[f"{d[0]}-{d[1]}-{d[3]}" for d in DEFECTS])
def test_defective_kernel_exceeds_the_default_tolerance(model, op, fmt, family, affine, out, scale):
    assert _worst_ratio(model, op, fmt, family, affine, out, weight_scale=scale) > 1.0


@pytest.mark.parametrize("model", ["default", "welford"])
@pytest.mark.parametrize("op,affine", [("layernorm", "weight_bias"), ("rmsnorm", "weight"), ("rmsnorm", "offset_weight")])
@pytest.mark.parametrize("fmt,out", [("fp32", "fp32"), ("bf16", "bf16"), ("fp16", "fp16"), ("bf16", "fp32")])
def test_careful_kernels_stay_within_the_default_tolerance_on_every_family(model, op, affine, fmt, out):
    for seed, family in enumerate(sorted(FAMILIES)):
        need_finite = family not in ("offset_1e4", "offset_1e6")
        ratio = _worst_ratio(model, op, fmt, family, affine, out, seed=seed, need_finite=need_finite)
        assert ratio <= 1.0, f"{family}: error/tolerance {ratio:.4g}"
