"""`semantics="llama"`: the normalizer as Hugging Face's LlamaRMSNorm specifies it, with the
cast to the activation dtype *before* the weight: y = RN_out(w · RN_act(x / rms(x))).

That is a different function from the exact normalizer rounded once (the default), and
kernels written for models trained with it must reproduce it (sglang#22931: a kernel that
multiplied by w in fp32 first cost MMLU points; atol = rtol = 1e-2 did not notice). Judging it:
a faithful kernel computes n̂ within the contract's fp32 tolerance E of n = x / rms(x), casts
it (c = RN_act(n̂)) and multiplies by w with one rounding. Every c it can produce lies
between RN_act(n_R − E − r) and RN_act(n_R + E + r) (n_R: n correctly rounded to fp32, r its
half-ulp), and RN_out(w·c) is monotone in c, so y must lie within the span of the two ends;
where both ends agree (almost everywhere) y is fixed exactly. The product w·c of two values
of at most 24 significant bits is exact in float64, so RN_out(w·c) is computed exactly.
The check is symmetric about y0 = RN_out(w · RN_act(n_R)) with the larger of the two
distances: a one-flip loosening at elements where the cast is ambiguous.
"""

from __future__ import annotations

import numpy as np

from normtheory.formats import FORMATS
from normtheory.testing.compare import QuantityResult, judge_elements
from normtheory.testing.problem import Problem


def judge_llama(problem: Problem) -> QuantityResult:
    from normtheory.precision import tolerance
    from normtheory.reference import correctly_rounded

    p = problem.params
    h = problem.h_rows
    got = problem.actual["y"]
    out_fmt, act_fmt = got.fmt, problem.h.fmt
    normalized = correctly_rounded(p.op, h, format="fp32", eps=p.eps, eps_mode=p.eps_mode, affine="none",
                                   p=p.p)["y"].astype(np.float64)
    contract = "model:eps_outside" if p.eps_mode == "outside" and problem.contract.kind == "default" \
        else str(problem.contract)
    finite_rows = np.isfinite(h).all(axis=1)
    spread = tolerance(p.op, np.where(finite_rows[:, None], h, 0.0), format=act_fmt.name, eps=p.eps, affine="none",
                       contract=contract, out_format="fp32", exact=normalized, p=p.p)
    spread = spread + 0.5 * FORMATS["fp32"].ulp(np.where(np.isfinite(normalized), normalized, 0.0))
    weight = np.ones(h.shape[1]) if problem.weight is None else problem.weight.values
    with np.errstate(invalid="ignore", over="ignore"):
        ends = [out_fmt.round_to_float64(weight * act_fmt.round_to_float64(normalized + sign * spread))
                for sign in (-1.0, 0.0, 1.0)]
        low, centre, high = ends
        halfwidth = np.maximum(np.abs(high - centre), np.abs(centre - low))
        halfwidth = np.where(np.isfinite(halfwidth), halfwidth, np.inf)
    result = judge_elements("y", got.values.reshape(h.shape), centre, halfwidth, out_fmt, got.shape)
    result.detail = (f"cast-before-weight semantics: y = RN_{out_fmt.name}(w · RN_{act_fmt.name}(n)); "
                     "the bound is the flip an ambiguous cast allows (0 almost everywhere)")
    return result
