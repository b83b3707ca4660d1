"""White-box emulation of the naive and the stable Lp kernels (kernels/lp.py), step by step.

Every operation is rounded to the model's accumulator (Arith), the sum runs in the model's
explicit order (reductions.tree_sum: `lanes=1` is the sequential worst case for the bound),
and pow is binary64 pow rounded once to the accumulator (within one ulp of the exact power:
binary64's pow errs by far less than the accumulator's half ulp). These are models of the
two algorithms, not bit copies of torch's kernels (torch's sum order is its own); they let
the bound of precision/bounds/lp.py be checked on the algorithm it describes, in every accumulator
(fp32, bf16, fp16), and the naive kernel's overflow be predicted with a truly fp16 or bf16
running sum (torch's CPU kernels accumulate fp16 sums in fp32 internally).

Step order — naive:  τ = pow(|x|, p); S = Σ τ; t = fl(fl(S/d) + fl(eps^(p/2))); N = pow(t, fl(1/p));
y = fl(x/N).  stable: â = fl(√eps); K = max(max|x|, â); z = fl(x/K); τ = pow(|z|, p);
f = pow(fl(â/K), p); t = fl(fl(Σ τ / d) + f); R = pow(t, fl(1/p)); y = fl(z/R).
p = inf (both): y = fl(x / max(max|x|, â)). Affine (weight, weight_bias) in the accumulator,
then one rounding to the output format.

Backward of the stable kernel (`emulate_stable_backward`), a model of a kernel that evaluates
the closed-form vector-Jacobian product (reference/formulas.py; proofs/test_claim3_jacobians.py)
gx = (g − K_b·φ)/N, N = K·R, K_b = Σ g·ŷ/d, g = gy·w (gy without a weight), not of torch's
autograd through the forward's operations. Per row, from the recomputed forward (ŷ, R̂, K):
    g = fl(gy·w);  K̂_b = fl(Σ g·ŷ (fused products, the model's order) · fl(1/d))
    φ̂ = sign(x)·pow(|ŷ|, p − 1)  (p = 1: sign(x); p = 2: ŷ itself, no pow)
    t = fl(g − φ̂·K̂_b) (one FMA when contracting);  gx = fl(fl(t/R̂)/K)
p = inf: the subgradient torch.linalg.vector_norm(ord=inf) and amax use — ties split evenly:
φ = fl(d/k)·sign(x) on the k entries with |x| = max|x| when max|x| ≥ â, 0 where the floor â
is the maximum; gx = fl(t/K). gw = Σ_rows gy·ŷ (fused, the model's order), gb = Σ_rows gy;
all gradients rounded once to their formats at the end.
"""

from __future__ import annotations

import math

import numpy as np

from normtheory.formats import as_format
from normtheory.precision.emulation.arith import Arith
from normtheory.precision.emulation.reductions import tree_sum, tree_sum_products
from normtheory.precision.models import Model

SEQUENTIAL = Model("lp_sequential", lanes=1)


def _pow(ar: Arith, base, exponent: float):
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return ar.round(np.power(np.asarray(base, dtype=np.float64), exponent))


def _finish(y, *, w, b, affine: str, ar: Arith, out_format) -> np.ndarray:
    if affine in ("weight", "weight_bias"):
        y = ar.mul(y, np.asarray(w, dtype=np.float64))
    if affine == "weight_bias":
        y = ar.add(y, np.asarray(b, dtype=np.float64))
    out = as_format(out_format)
    return out.round_to_float64(y)


def _max_norm(x, eps, ar):
    K = np.maximum(np.abs(x).max(axis=1), ar.round(math.sqrt(eps)))
    return ar.div(x, K[:, None])


def emulate_naive(x, w=None, b=None, *, p, eps: float, affine="none", out_format="fp32", model: Model = SEQUENTIAL):
    ar = Arith(model.acc)
    with np.errstate(all="ignore"):
        x = ar.load(np.atleast_2d(np.asarray(x, dtype=np.float64)))
        if math.isinf(p):
            return _finish(_max_norm(x, eps, ar), w=w, b=b, affine=affine, ar=ar, out_format=out_format)
        n = x.shape[1]
        S = tree_sum(_pow(ar, np.abs(x), p), ar, model)
        t = ar.add(ar.div(S, float(n)), ar.round(eps ** (p / 2)))
        N = _pow(ar, t, float(ar.round(1.0 / p)))
        return _finish(ar.div(x, N[:, None]), w=w, b=b, affine=affine, ar=ar, out_format=out_format)


def emulate_stable(x, w=None, b=None, *, p, eps: float, affine="none", out_format="fp32", model: Model = SEQUENTIAL):
    ar = Arith(model.acc)
    with np.errstate(all="ignore"):
        x = ar.load(np.atleast_2d(np.asarray(x, dtype=np.float64)))
        y, _, _ = _stable_parts(x, p=p, eps=eps, ar=ar, model=model)
        return _finish(y, w=w, b=b, affine=affine, ar=ar, out_format=out_format)


def _stable_parts(x, *, p, eps: float, ar: Arith, model: Model):
    """(ŷ before the affine step, R̂ per row (None for p = inf), K per row) of the stable kernel."""
    a_hat = float(ar.round(math.sqrt(eps)))
    K = np.maximum(np.abs(x).max(axis=1), a_hat)
    if math.isinf(p):
        return ar.div(x, K[:, None]), None, K
    n = x.shape[1]
    z = ar.div(x, K[:, None])
    f = _pow(ar, ar.div(a_hat, K), p)
    t = ar.add(ar.div(tree_sum(_pow(ar, np.abs(z), p), ar, model), float(n)), f)
    R = _pow(ar, t, float(ar.round(1.0 / p)))
    return ar.div(z, R[:, None]), R, K


def emulate_stable_backward(x, gy, w=None, *, p, eps: float, affine="none", grad_format="fp32", w_format=None,
                            model: Model = SEQUENTIAL) -> dict:
    """{"gx": (rows, n), "gw": (n,), "gb": (n,)} of the stable kernel's backward (module docstring),
    as float64 values of their formats (gw for weight modes, gb for weight_bias)."""
    ar = Arith(model.acc)
    grad = as_format(grad_format)
    w_out = as_format(w_format or grad)
    with np.errstate(all="ignore"):
        x = ar.load(np.atleast_2d(np.asarray(x, dtype=np.float64)))
        gy = ar.load(np.asarray(gy, dtype=np.float64).reshape(x.shape))
        rows, n = x.shape
        y, R, K = _stable_parts(x, p=p, eps=eps, ar=ar, model=model)
        g = gy if affine == "none" else ar.mul(gy, np.asarray(w, dtype=np.float64))
        k_b = ar.mul(tree_sum_products(g, y, ar, model), ar.round(1.0 / n))
        sign = np.sign(x)
        if math.isinf(p):
            top = np.abs(x).max(axis=1, keepdims=True)
            at_max = (np.abs(x) == top) & (top >= K[:, None]) & (top > 0)
            ties = np.maximum(at_max.sum(axis=1, keepdims=True), 1)
            phi = np.where(at_max, sign * ar.round(n / ties), 0.0)
        elif p == 1:
            phi = sign
        elif p == 2:
            phi = y
        else:
            phi = sign * _pow(ar, np.abs(y), p - 1.0)
        t = ar.mul_add(-phi, k_b[:, None], g, model.fma)
        scaled = t if R is None else ar.div(t, R[:, None])
        gx = grad.round_to_float64(ar.div(scaled, K[:, None]))
        out = {"gx": gx}
        if affine in ("weight", "weight_bias"):
            out["gw"] = w_out.round_to_float64(tree_sum_products(gy.T, y.T, ar, model))
        if affine == "weight_bias":
            out["gb"] = w_out.round_to_float64(tree_sum(gy.T, ar, model))
        return out
