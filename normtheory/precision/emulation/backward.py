"""White-box emulated backward kernels (gx, gw, gb) for every op with an emulated statistic.

A model of the class of careful backward kernels, not a copy of one library's kernel (for every
named model; no backward output is claimed bit-identical to a real kernel's). Per row,
every step rounded in the model's accumulator format (the forward's statistics algorithm,
rsqrt accuracy, FMA contraction and FTZ/DAZ are those of the same `Model`):

    recompute       mean μ̂ and r̂ as the forward does (the statistics a kernel saves in the
                    accumulator format), n̂ = fl(fl(x − μ̂)·r̂)
    weight factor   g = fl(gy·w̃), w̃ = 1 (affine none: g = gy, no rounding), w, or
                    fl_off(1 + w); `llama`: the product is rounded in the output format,
                    as autograd does for HF Llama's multiply in the input dtype
    row sums        A = Σg (LayerNorm only), B = Σg·n̂ (products fused when contracting),
                    S = Σn̂ (CRMSNorm only), all with the tree of models.py
    means           m = fl(A·fl(1/d)), K = fl(B·fl(1/d))
    direction       φ = n̂ (LayerNorm, RMSNorm) or fl(n̂ + S) (CRMSNorm)
    gx              t = fl(g − m) (LayerNorm) or g; t₂ = fl(t − φ·K) (one FMA when
                    contracting); gx = fl(t₂·r̂); then one rounding (truncation for the
                    `truncate` model) to the gradient format
    gw, gb          over the rows, per column, with the same lane/tree layout: gw = Σ gy·n̂
                    (llama: Σ fl_o(gy·fl_o(n̂))), gb = Σ gy; one rounding to the weight format.

eps outside the root (y = c/(σ + eps), σ = sqrt of the statistic): the exact gradient has a
factor ρ = (σ + eps)/σ on K (reference/formulas.py: N moves with σ, not with N itself), which
the kernel forms from what its forward computed, σ̂ = fl(sqrt(stat̂)) and den = fl(σ̂ + fl(eps)):
    ρ̂ = fl(den/σ̂) (0 where σ̂ = 0: every n̂ is then 0 and the term has nothing to scale),
    K̂ = fl(fl(B̂·fl(1/d))·ρ̂);
the rest is as above.

An eps floor that pins the scale (emulation/statistic_rules.EmulatedFloor.pinned_rows, eps
inside): on the rows where the kernel's own comparison takes the floor the scale does not move
with x and K̂ = 0 (gx = fl(g·r̂), no projection); elsewhere the projection as above, with the
statistic's divisor (d is NormSpec.statistic_divisor everywhere here).
"""

from __future__ import annotations

import numpy as np

from normtheory.formats import as_format
from normtheory.precision.emulation.arith import Arith
from normtheory.precision.emulation.forward import (
    backward_floor,
    emulated_spec,
    normalize,
    truncate,
)
from normtheory.precision.emulation.reductions import tree_sum, tree_sum_products
from normtheory.precision.models import Model


def backward(op: str, x, gy, w=None, b=None, *, model: Model, eps: float, affine: str = "none",
             grad_format="fp32", w_format=None) -> dict:
    """{"gx": (rows, n), "gw": (n,), "gb": (n,)} as float64 values of their formats.

    gx is rounded to `grad_format` (a kernel returns it in x's dtype), gw and gb to `w_format`
    (default: `grad_format`). Like hardware, nothing is raised on overflow: inf or NaN results.
    """
    emulated_spec(op)
    with np.errstate(all="ignore"):
        return _backward(op, x, gy, w, b, model=model, eps=eps, affine=affine, out=as_format(grad_format),
                         w_out=as_format(w_format or grad_format))


def _outside_factor(stat: np.ndarray, *, ar: Arith, eps: float) -> np.ndarray:
    """ρ̂ = fl(fl(σ̂ + fl(eps))/σ̂) per row from the forward's own statistic stat̂ (as the backward
    recomputes it), 0 where σ̂ = 0."""
    sigma = ar.sqrt(stat)
    den = ar.add(sigma, ar.round(eps))
    safe = np.where(sigma > 0, sigma, 1.0)
    return np.where(sigma > 0, ar.div(den, safe), 0.0)


def _finish(values, fmt, model):
    return truncate(values, fmt) if model.output == "truncate" else fmt.round_to_float64(values)


def _backward(op: str, x, gy, w, b, *, model: Model, eps: float, affine: str, out, w_out) -> dict:
    ar = Arith(model.acc, ftz=model.ftz, daz=model.ftz)
    x = ar.load(np.atleast_2d(np.asarray(x, dtype=np.float64)))
    gy = ar.load(np.asarray(gy, dtype=np.float64).reshape(x.shape))
    d, stat, r, normalized = normalize(op, x, ar, model, eps)

    # the weight factor's multiply happens where the forward's affine step happens
    product_ar = Arith(out) if model.output == "llama" else ar
    if affine == "none":
        g = gy
    elif affine in ("weight", "weight_bias"):
        g = product_ar.mul(gy, np.asarray(w, dtype=np.float64))
    elif affine == "offset_weight":
        g = product_ar.mul(gy, Arith(model.offset_format or model.acc).add(1.0, np.asarray(w, dtype=np.float64)))
    else:
        raise ValueError(f"unknown affine mode {affine!r}")

    inv_d = ar.round(1.0 / d)
    k = ar.mul(tree_sum_products(g, normalized, ar, model), inv_d)
    spec = emulated_spec(op)
    if model.eps_mode == "outside":
        k = ar.mul(k, _outside_factor(stat, ar=ar, eps=eps))
    floor = backward_floor(spec, model)
    if floor is not None and floor.pinned_rows is not None:  # a pinned scale does not move with x: no projection
        k = np.where(floor.pinned_rows(stat, eps, ar), 0.0, k)
    if spec.statistic == "crms":  # CRMSNorm's direction n + Σn (bounds/statistic_rules.py)
        direction = ar.add(normalized, tree_sum(normalized, ar, model)[:, None])
    else:
        direction = normalized
    t = ar.sub(g, ar.mul(tree_sum(g, ar, model), inv_d)[:, None]) if spec.centred else g
    t2 = ar.mul_add(-direction, k[:, None], t, model.fma)
    gx = _finish(ar.mul(t2, r[:, None]), out, model)

    # column reductions over the rows: the same lane layout, applied to the transposes
    if model.output == "llama":
        terms = Arith(out).mul(gy, Arith(out).round(normalized))
        gw = tree_sum(terms.T, ar, model)
    else:
        gw = tree_sum_products(gy.T, normalized.T, ar, model)
    gb = tree_sum(gy.T, ar, model)
    return {"gx": gx, "gw": _finish(gw, w_out, model), "gb": _finish(gb, w_out, model)}
