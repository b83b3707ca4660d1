"""Precision model: emulated kernels, a-priori error bounds, domains, and `tolerance`.

`tolerance(...)` is the one place the rest of normtheory gets a tolerance from: it returns,
per element, the largest |q̂ − q| (q exact) that a contract allows, for the forward output
q = y or a gradient q = gx, gw, gb (bounds/forward.py, bounds/backward.py).

Contracts:
- "default": the kernel is a careful GPU kernel — fp32 accumulation over a warp (32 lanes)
  or more per row with a butterfly tree, two-pass or Welford statistics, rsqrt within 2 fp32
  ulps, FMA contraction allowed (not required), one rounding at the output. The tolerance is
  the elementwise maximum of the bounds of the `default` (two-pass) and `welford` models, each
  as named (contracted) and with fma=False (each product rounded on its own, as eager CPU code
  or nvcc --fmad=false computes it): models.DEFAULT_CONTRACT_MODELS. An unfused kernel's bound
  is up to a few per cent above the contracted one (gx's φ·K, the sums of ĝ·n̂ and gy·n̂,
  Welford's δ̂·â), so the contracted bounds alone could fail a careful unfused kernel.
- "model:NAME": the worst-case bound of the named model (models.MODELS), as named: `default`
  and `welford` there are the contracted models.
- "ulp:K": K ulps of the output format at the exact value (`exact` must be given).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import ArrayLike

from normtheory.errors import UsageError
from normtheory.formats import FloatFormat, as_format
from normtheory.precision.bounds.backward import backward_bound
from normtheory.precision.bounds.forward import forward_bound
from normtheory.precision.bounds.lp import stable_backward_bound, stable_forward_bound
from normtheory.precision.bounds.normalized import Normalized, normalized_error
from normtheory.precision.contract import Contract, parse_contract
from normtheory.precision.models import MODELS, Model
from normtheory.precision.toolkit.context import BoundContext
from normtheory.registry import get_spec, parse_p

__all__ = ["tolerance", "tolerances", "MODELS", "forward_bound", "backward_bound", "QUANTITIES"]


QUANTITIES = ("y", "gx", "gw", "gb")


def tolerance(op: str, x: ArrayLike, w: ArrayLike | None = None, b: ArrayLike | None = None, *,
              format: str | FloatFormat, eps: float, affine: str = "none", contract: str | Contract = "default",
              out_format: str | FloatFormat | None = None, exact: ArrayLike | None = None, kind: str = "worst",
              quantity: str = "y", gy: ArrayLike | None = None, w_format: str | FloatFormat | None = None,
              p: float | str | None = None) -> np.ndarray:
    """Per-element allowed |q̂ − q| for quantity q (inf where no bound holds).

    quantity "y" (forward output, in `out_format`, default `format`) and "gx" (in `format`,
    x's dtype, as a kernel returns it) give float64 arrays shaped like x; "gw" and "gb" (in
    `w_format`, default `format`) give shape (n,), reduced over the rows of x. The gradients
    need `gy` (shaped like x, in `format`). `kind` is "worst" (a guarantee) or
    "probabilistic" (the √n form, labelled as such in reports). For "ulp:K", `exact` is the
    exact value of the same quantity. For op "lpnorm" (exponent `p`) the `default` contract is
    the worst-case bound of the stable kernel (precision/bounds/lp.py: rescale by max|x|, fp32
    accumulation, pow within 4 ulps), for y and for its closed-form backward gx, gw, gb
    (stable_backward_bound, the algorithm of emulation/lp.emulate_stable_backward, with or
    without FMA);
    there is no model:NAME bound for Lp.
    `contract` may be given as text ('default', 'model:NAME', 'ulp:K'): it is parsed here.
    Several quantities of the same rows: `tolerances` (one evaluation of what they share).
    """
    if quantity not in QUANTITIES:
        raise UsageError(f"unknown quantity {quantity!r}; known: {', '.join(QUANTITIES)}")
    return tolerances(op, x, w, b, format=format, eps=eps, affine=affine, contract=contract, out_format=out_format,
                      exact=None if exact is None else {quantity: exact}, kind=kind, quantities=(quantity,), gy=gy,
                      w_format=w_format, p=p)[quantity]


def tolerances(op: str, x: ArrayLike, w: ArrayLike | None = None, b: ArrayLike | None = None, *,
               format: str | FloatFormat, eps: float, affine: str = "none", contract: str | Contract = "default",
               out_format: str | FloatFormat | None = None, exact: Mapping[str, ArrayLike] | None = None,
               kind: str = "worst", quantities: Sequence[str] = QUANTITIES, gy: ArrayLike | None = None,
               w_format: str | FloatFormat | None = None, p: float | str | None = None) -> dict[str, np.ndarray]:
    """`tolerance` of several quantities of the same rows at once: {quantity: bound}, each
    exactly what `tolerance(..., quantity=q)` gives. Each model's forward statistics and
    normalized values (bounds/normalized.py, the costly part: Welford's adjoint sweep) are
    evaluated once and shared by y, gx, gw and gb, and the backward bounds of gx, gw and gb come
    from one pass. `exact` maps each quantity to its exact value (for "ulp:K")."""
    fmt = as_format(format)
    unknown = [q for q in quantities if q not in QUANTITIES]
    if unknown:
        raise UsageError(f"unknown quantity {unknown[0]!r}; known: {', '.join(QUANTITIES)}")
    contract = parse_contract(contract)
    spec = get_spec(op)
    x2 = np.atleast_2d(np.asarray(x, dtype=np.float64))
    formats = {"y": as_format(out_format or fmt), "gx": fmt, "gw": as_format(w_format or fmt),
               "gb": as_format(w_format or fmt)}
    shapes = {"y": np.shape(x), "gx": np.shape(x), "gw": x2.shape[1:], "gb": x2.shape[1:]}
    if contract.kind == "ulp":
        if exact is None or any(q not in exact for q in quantities):
            raise UsageError("contract ulp:K needs the exact outputs")
        assert contract.ulps is not None
        return {q: contract.ulps * formats[q].ulp(np.asarray(exact[q], dtype=np.float64)).reshape(shapes[q])
                for q in quantities}
    gradients = tuple(q for q in QUANTITIES if q in quantities and q != "y")
    gy2 = _checked_gradient(gy, x, x2, gradients)
    if spec.takes_p:
        return _lp_tolerances(x2, w, b, gy2, shapes, p=p, eps=eps, affine=affine, contract=contract,
                              quantities=quantities, formats=formats)
    models = list(contract.models)
    if not spec.centred:  # the statistics algorithm only matters for a mean: skip duplicates
        models = list({model.variant(name="", stats="two_pass"): model for model in models}.values())
    bounds = {q: np.zeros(x2.shape if q in ("y", "gx") else x2.shape[1:]) for q in quantities}
    forward_done: dict[Model, Normalized] = {}
    for model in models:
        if gradients and model.eps_mode != "inside":
            raise UsageError(f"model {model.name!r} has no backward bound (eps outside the root is not modelled)")
        # FMA contraction enters the forward only through Welford's update (bounds/welford.py):
        # models that differ in nothing else share the forward's statistics and y bound
        forward_key = model.variant(name="", fma=True) if model.stats != "welford" else model
        shared = forward_key in forward_done
        if not shared:
            forward_done[forward_key] = normalized_error(spec, x2, BoundContext(model, kind), eps=eps)
        # shared by every quantity; labelled with this model, for which the same values hold
        norm = replace(forward_done[forward_key], ctx=BoundContext(model, kind))
        if "y" in quantities and not shared:
            result = forward_bound(spec.name, x2, w, b, model=model, eps=eps, affine=affine, out_format=formats["y"],
                                   kind=kind, normalized=norm)
            bounds["y"] = np.maximum(bounds["y"], result.total)
        if gradients:
            assert gy2 is not None
            grads = backward_bound(spec.name, x2, gy2, w, b, model=model, eps=eps, affine=affine, grad_format=fmt,
                                   w_format=formats["gw"], kind=kind, quantities=gradients, normalized=norm)
            for q in gradients:
                bounds[q] = np.maximum(bounds[q], getattr(grads, q))
    return {q: bound.reshape(shapes[q]) for q, bound in bounds.items()}


def _checked_gradient(gy: ArrayLike | None, x: ArrayLike, x2: np.ndarray, gradients: tuple[str, ...]) -> np.ndarray | None:
    """gy shaped like the rows, when a gradient is asked for; UsageError when it is missing or misshapen."""
    if not gradients:
        return None
    if gy is None:
        raise UsageError(f"quantity {gradients[0]!r} needs the incoming gradient gy")
    gy2 = np.asarray(gy, dtype=np.float64)
    if gy2.size != x2.size:
        raise UsageError(f"gy must have the shape of x {np.shape(x)}, got {gy2.shape}")
    return gy2.reshape(x2.shape)


def _lp_tolerances(x2: np.ndarray, w: ArrayLike | None, b: ArrayLike | None, gy2: np.ndarray | None,
                   shapes: Mapping[str, tuple[int, ...]], *, p: float | str | None, eps: float, affine: str,
                   contract: Contract, quantities: Sequence[str], formats: Mapping[str, FloatFormat]) -> dict[str, np.ndarray]:
    """The stable Lp kernel's bounds (precision/bounds/lp.py): y in its output format; gx, gw, gb
    from one backward evaluation, gx in x's format and gw, gb in the weight's, as `backward_bound`
    takes them for the other ops. fma=False: the bound of g − φ·K_b with the product rounded
    first, which also covers a kernel that contracts it into one FMA (its L4 term is larger), so a
    kernel may do either (kernels/lp.py's torch backward rounds the product)."""
    if contract.kind != "default":
        raise UsageError(f"lpnorm supports the contracts default and ulp:K, not {str(contract)!r}")
    p_value = parse_p(p)
    bounds = {}
    if "y" in quantities:
        bounds["y"] = stable_forward_bound(x2, w, b, p=p_value, eps=eps, affine=affine, out_format=formats["y"]).total
    gradients = [q for q in quantities if q != "y"]
    if gradients:
        assert gy2 is not None
        grads = stable_backward_bound(x2, gy2, w, p=p_value, eps=eps, affine=affine, grad_format=formats["gx"],
                                      w_format=formats["gw"], fma=False)
        for q in gradients:  # gw, gb without the affine mode that has them: no bound (inf), as for the other ops
            bounds[q] = grads.get(q, np.full(x2.shape[1:], np.inf))
    return {q: bounds[q].reshape(shapes[q]) for q in quantities}
