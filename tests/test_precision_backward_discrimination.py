"""Discrimination in backward: the `default` tolerance for gx, gw, gb rejects defective
backward kernels on some family and accepts the careful ones (two-pass and Welford in fp32)
on every family."""

import numpy as np
import pytest

from normtheory.families import FAMILIES, draw_rows
from normtheory.formats import FORMATS
from normtheory.precision import tolerance
from normtheory.precision.emulation.backward import backward
from normtheory.precision.measure import absolute_errors, exact_outputs
from normtheory.precision.models import MODELS

N = 256
EPS = 1e-5
QUANTITIES = {"weight_bias": ("gx", "gw", "gb"), "weight": ("gx", "gw"), "offset_weight": ("gx", "gw")}


def _case(op, fmt_name, family, seed):
    fmt = FORMATS[fmt_name]
    rng = np.random.default_rng(seed)
    x = draw_rows(family, rng, 2, N, fmt)
    gy = fmt.round_to_float64(rng.standard_normal((2, N)))
    w = fmt.round_to_float64(rng.standard_normal(N) * 4)
    b = fmt.round_to_float64(rng.standard_normal(N))
    return x, gy, w, b


def _worst_ratios(model_names, op, fmt_name, family, affine, seed=0):
    """{model: {quantity: (worst error/tolerance over finite tolerances, count of infinite ones)}}."""
    x, gy, w, b = _case(op, fmt_name, family, seed)
    exact = exact_outputs(op, x, w, b, eps=EPS, affine=affine, gy=gy)
    tolerances = {q: tolerance(op, x, w, b, format=fmt_name, eps=EPS, affine=affine, quantity=q, gy=gy)
                  for q in QUANTITIES[affine]}
    result = {}
    for name in model_names:
        computed = backward(op, x, gy, w, b, model=MODELS[name], eps=EPS, affine=affine, grad_format=fmt_name)
        result[name] = {}
        for quantity, tol in tolerances.items():
            err = absolute_errors(computed[quantity], exact[quantity])
            finite = np.isfinite(tol)
            result[name][quantity] = (float(np.max(err[finite] / tol[finite], initial=0.0)), int((~finite).sum()))
    return result


# (defective model, op, input format, family, affine, the gradient that shows it)
DEFECTS = [
    ("onepass", "layernorm", "fp32", "offset_1e4", "weight_bias", "gx"),
    ("onepass", "layernorm", "fp32", "offset_1e4", "weight_bias", "gw"),
    ("fp16_accum", "rmsnorm", "fp16", "offset_1e2", "weight", "gx"),
    ("fp16_accum", "layernorm", "fp16", "normal", "weight_bias", "gw"),
    ("llama", "rmsnorm", "bf16", "normal", "weight", "gw"),
    ("truncate", "rmsnorm", "bf16", "normal", "weight", "gx"),
    # eps outside the root: ρ = 1 + eps/σ on K and 1/(σ + eps) for 1/sqrt(σ² + eps) — visible
    # where σ is small (every format), and in fp32 already on normal RMSNorm rows (eps/σ ≫ u)
    ("eps_outside", "layernorm", "fp32", "near_constant", "weight_bias", "gx"),
    ("eps_outside", "layernorm", "bf16", "near_constant", "weight_bias", "gw"),
    ("eps_outside", "rmsnorm", "fp32", "normal", "weight", "gx"),
    ("eps_outside", "rmsnorm", "fp16", "tiny", "weight", "gw"),
    # an rsqrt with ~1e-3 relative error, and (1 + w) formed in bf16 for an fp32 kernel
    ("approx_rsqrt", "rmsnorm", "fp32", "normal", "weight", "gx"),
    ("approx_rsqrt", "layernorm", "bf16", "normal", "weight_bias", "gw"),
    ("offset_bf16", "rmsnorm", "fp32", "normal", "offset_weight", "gx"),
]


@pytest.mark.parametrize("model,op,fmt,family,affine,quantity", DEFECTS,
                         ids=[f"{d[0]}-{d[1]}-{d[3]}-{d[5]}" for d in DEFECTS])
def test_defective_backward_exceeds_the_default_tolerance(model, op, fmt, family, affine, quantity):
    ratio, infinite = _worst_ratios([model], op, fmt, family, affine)[model][quantity]
    assert infinite == 0, "the default contract must give a finite tolerance on this input"
    assert ratio > 1.0


@pytest.mark.parametrize("op,affine", [("layernorm", "weight_bias"), ("rmsnorm", "weight"), ("rmsnorm", "offset_weight")])
@pytest.mark.parametrize("fmt", ["fp32", "bf16", "fp16"])
def test_careful_backward_kernels_stay_within_the_default_tolerance_on_every_family(op, affine, fmt):
    for seed, family in enumerate(sorted(FAMILIES)):
        ratios = _worst_ratios(["default", "welford"], op, fmt, family, affine, seed=seed)
        for model, by_quantity in ratios.items():
            for quantity, (ratio, _) in by_quantity.items():
                assert ratio <= 1.0, f"{model} {quantity} on {family}: error/tolerance {ratio:.4g}"
