"""Property test (hypothesis, subnormals allowed): the stable Lp kernel stays within its
a-priori bound on arbitrary finite fp16 / bf16 / fp32 rows, against the exact reference."""

import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from normtheory.formats import FORMATS
from normtheory.kernels.lp import lp_norm_stable
from normtheory.precision.bounds.lp import stable_forward_bound
from normtheory.precision.measure import absolute_errors
from normtheory.reference import evaluate
from normtheory.theory.lp.measure import TORCH_DTYPES

PS = (1.0, 1.25, 2.0, 3.0, 8.0, math.inf)


@st.composite
def rows_of_a_format(draw):
    fmt = draw(st.sampled_from(("fp16", "bf16", "fp32")))
    width = 16 if fmt == "fp16" else 32
    # fp16 and fp32 are drawn as numpy floats (every finite value, subnormals included);
    # bf16 as fp32 values rounded to bf16 (saturating, so they stay finite)
    raw = draw(hnp.arrays(np.float16 if fmt == "fp16" else np.float32,
                          hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=width),
                          elements={"allow_nan": False, "allow_infinity": False, "allow_subnormal": True}))
    x = FORMATS[fmt].round_to_float64(raw.astype(np.float64), saturate=True)
    return fmt, x


@given(rows_of_a_format(), st.sampled_from(PS), st.sampled_from((0.0, 1e-6, 1.0)))
def test_stable_kernel_is_within_its_bound_on_arbitrary_rows(case, p, eps):
    fmt, x = case
    y = lp_norm_stable(torch.from_numpy(x).to(TORCH_DTYPES[fmt]), None, None, eps, p).to(torch.float64).numpy()
    exact = evaluate("lpnorm", x, eps=eps, affine="none", p=p, prec=96)["y"]
    bound = stable_forward_bound(x, p=p, eps=eps, out_format=fmt).total
    errors = absolute_errors(y, exact)  # 0 where both are NaN (zero rows with eps = 0)
    nan_rows = (x == 0).all(axis=1) & (eps == 0)
    assert np.isfinite(bound[~nan_rows]).all()
    assert (errors <= bound).all(), (fmt, p, eps, float(np.max(errors / bound)))
