"""White-box emulation of the naive and the stable Lp kernels (kernels/lp.py), step by step.

Every operation is rounded to the model's accumulator (Arith), the sum runs in the model's
explicit order (reductions.tree_sum: `lanes=1` is the sequential worst case for the bound),
and pow is binary64 pow rounded once to the accumulator (within one ulp of the exact power:
binary64's pow errs by far less than the accumulator's half ulp). These are models of the
two algorithms, not bit copies of torch's kernels (torch's sum order is its own); they let
the bound of precision/lp.py be checked on the algorithm it describes, in every accumulator
(fp32, bf16, fp16), and the naive kernel's overflow be predicted with a truly fp16 or bf16
running sum (torch's CPU kernels accumulate fp16 sums in fp32 internally).

Step order — naive:  τ = pow(|x|, p); S = Σ τ; t = fl(fl(S/d) + fl(eps^(p/2))); N = pow(t, fl(1/p));
y = fl(x/N).  stable: â = fl(√eps); K = max(max|x|, â); z = fl(x/K); τ = pow(|z|, p);
f = pow(fl(â/K), p); t = fl(fl(Σ τ / d) + f); R = pow(t, fl(1/p)); y = fl(z/R).
p = inf (both): y = fl(x / max(max|x|, â)). Affine (weight, weight_bias) in the accumulator,
then one rounding to the output format.
"""

from __future__ import annotations

import math

import numpy as np

from normtheory.formats import FORMATS
from normtheory.precision.arith import Arith
from normtheory.precision.models import Model
from normtheory.precision.reductions import tree_sum

SEQUENTIAL = Model("lp_sequential", lanes=1)


def _pow(ar: Arith, base, exponent: float):
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return ar.round(np.power(np.asarray(base, dtype=np.float64), exponent))


def _finish(y, w, b, affine, ar, out_format):
    if affine in ("weight", "weight_bias"):
        y = ar.mul(y, np.asarray(w, dtype=np.float64))
    if affine == "weight_bias":
        y = ar.add(y, np.asarray(b, dtype=np.float64))
    out = FORMATS[out_format] if isinstance(out_format, str) else out_format
    return out.round_to_float64(y)


def _max_norm(x, eps, ar):
    K = np.maximum(np.abs(x).max(axis=1), ar.round(math.sqrt(eps)))
    return ar.div(x, K[:, None])


def emulate_naive(x, w=None, b=None, *, p, eps: float, affine="none", out_format="fp32", model: Model = SEQUENTIAL):
    ar = Arith(model.acc)
    with np.errstate(all="ignore"):
        x = ar.load(np.atleast_2d(np.asarray(x, dtype=np.float64)))
        if math.isinf(p):
            return _finish(_max_norm(x, eps, ar), w, b, affine, ar, out_format)
        n = x.shape[1]
        S = tree_sum(_pow(ar, np.abs(x), p), ar, model)
        t = ar.add(ar.div(S, float(n)), ar.round(eps ** (p / 2)))
        N = _pow(ar, t, float(ar.round(1.0 / p)))
        return _finish(ar.div(x, N[:, None]), w, b, affine, ar, out_format)


def emulate_stable(x, w=None, b=None, *, p, eps: float, affine="none", out_format="fp32", model: Model = SEQUENTIAL):
    ar = Arith(model.acc)
    with np.errstate(all="ignore"):
        x = ar.load(np.atleast_2d(np.asarray(x, dtype=np.float64)))
        if math.isinf(p):
            return _finish(_max_norm(x, eps, ar), w, b, affine, ar, out_format)
        n = x.shape[1]
        a_hat = float(ar.round(math.sqrt(eps)))
        K = np.maximum(np.abs(x).max(axis=1), a_hat)
        z = ar.div(x, K[:, None])
        f = _pow(ar, ar.div(a_hat, K), p)
        t = ar.add(ar.div(tree_sum(_pow(ar, np.abs(z), p), ar, model), float(n)), f)
        R = _pow(ar, t, float(ar.round(1.0 / p)))
        return _finish(ar.div(z, R[:, None]), w, b, affine, ar, out_format)
