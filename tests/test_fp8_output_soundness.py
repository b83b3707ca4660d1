"""Soundness search: hypothesis looks for inputs that push the torch norm → fp8 compositions
past `fp8_output_bound` (or make their scales leave `scale_interval`), with target(err/bound),
over the structured families rescaled by powers of two, every current-scaling recipe, both fp8
formats with an IEEE-like zero (e4m3fn, e5m2) and the fnuz e4m3, and random weights/biases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note, target
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from normtheory.families import FAMILIES, draw_rows  # noqa: E402
from normtheory.formats import FORMATS  # noqa: E402
from normtheory.kernels.fp8_output import layer_norm_fp8, rms_norm_fp8  # noqa: E402
from normtheory.kernels.fp8_probe import probe_cast  # noqa: E402
from normtheory.precision.lowprecision.scaled_check import judge_scaled_output  # noqa: E402
from normtheory.precision.measure import as_float64, exact_outputs  # noqa: E402

TORCH = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2, "fp8_e4m3fnuz": torch.float8_e4m3fnuz}
KERNELS = {"rmsnorm": (rms_norm_fp8, "weight"), "layernorm": (layer_norm_fp8, "weight_bias")}
FP32 = FORMATS["fp32"]


@given(op=st.sampled_from(sorted(KERNELS)), name=st.sampled_from(sorted(TORCH)),
       scaling=st.sampled_from(["tensor", "row", "block:8", "block:24", "mx", "mx:16"]),
       family=st.sampled_from(sorted(FAMILIES)), n=st.integers(2, 80), rows=st.integers(1, 3),
       power=st.integers(-20, 20), seed=st.integers(0, 2**32 - 1), eps=st.sampled_from([1e-5, 1e-6, 0.25]))
def test_no_input_exceeds_the_bound(op, name, scaling, family, n, rows, power, seed, eps):
    kernel, affine = KERNELS[op]
    rng = np.random.default_rng(seed)
    x = FP32.round_to_float64(draw_rows(family, rng, rows, n, FP32) * 2.0**power)
    w = FP32.round_to_float64(rng.uniform(-4, 4, n))
    b = FP32.round_to_float64(rng.uniform(-1, 1, n)) if affine == "weight_bias" else None
    y = as_float64(exact_outputs(op, x, w, b, eps=eps, affine=affine)["y"])
    t = lambda a: None if a is None else torch.from_numpy(a.astype(np.float32))  # noqa: E731
    q, scale = kernel(t(x), t(w), t(b), eps, scaling=scaling, out_dtype=TORCH[name])
    verdict = judge_scaled_output(op, x, w, b, q.double().numpy(), scale.double().numpy(), format="fp32", eps=eps,
                                  affine=affine, out_format=name, scaling=scaling, exact=y,
                                  saturate=probe_cast(name).saturates)
    note(str(verdict))
    target(verdict.max_err_over_bound)
    assert verdict.passed, verdict.findings
