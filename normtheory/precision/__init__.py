"""Precision model: emulated kernels, a-priori error bounds, domains, and `tolerance`.

`tolerance(...)` is the one place the rest of normtheory gets a tolerance from: it returns,
per element, the largest |q̂ − q| (q exact) that a contract allows, for the forward output
q = y or a gradient q = gx, gw, gb (bounds/forward.py, bounds/backward.py).

Contracts:
- "default": the kernel is a careful GPU kernel — fp32 accumulation over a warp (32 lanes)
  or more per row with a butterfly tree, two-pass or Welford statistics, rsqrt within 2 fp32
  ulps, FMA contraction allowed, one rounding at the output. The tolerance is the larger of
  the worst-case bounds of the `default` (two-pass) and `welford` models (bounds/forward.py).
- "model:NAME": the worst-case bound of the named model (models.MODELS).
- "ulp:K": K ulps of the output format at the exact value (`exact` must be given).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from normtheory.errors import UsageError
from normtheory.formats import FloatFormat, as_format
from normtheory.precision.bounds.backward import backward_bound
from normtheory.precision.bounds.forward import forward_bound
from normtheory.precision.bounds.lp import stable_forward_bound
from normtheory.precision.contract import Contract, parse_contract
from normtheory.precision.models import MODELS, Model
from normtheory.registry import NormSpec, get_spec, parse_p

__all__ = ["tolerance", "MODELS", "forward_bound", "backward_bound", "QUANTITIES"]


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
    accumulation, pow within 4 ulps); there is no backward or model bound for Lp yet.
    `contract` may be given as text ('default', 'model:NAME', 'ulp:K'): it is parsed here.
    """
    fmt = as_format(format)
    if quantity not in QUANTITIES:
        raise UsageError(f"unknown quantity {quantity!r}; known: {', '.join(QUANTITIES)}")
    contract = parse_contract(contract)
    spec = get_spec(op)
    x2 = np.atleast_2d(np.asarray(x, dtype=np.float64))
    shape = np.shape(x) if quantity in ("y", "gx") else x2.shape[1:]
    quantity_format = as_format({"y": out_format or fmt, "gx": fmt}.get(quantity, w_format or fmt))
    if contract.kind == "ulp":
        if exact is None:
            raise UsageError("contract ulp:K needs the exact outputs")
        assert contract.ulps is not None
        return contract.ulps * quantity_format.ulp(np.asarray(exact, dtype=np.float64)).reshape(shape)
    if spec.takes_p:
        return _lp_tolerance(x2, w, b, shape, p=p, eps=eps, affine=affine, contract=contract, quantity=quantity,
                             out_format=quantity_format)
    models = list(contract.models)
    if not spec.centred:  # the statistics algorithm only matters for a mean: skip duplicates
        models = list({model.variant(name="", stats="two_pass"): model for model in models}.values())
    if quantity == "y":
        return _forward_tolerance(spec, x2, w, b, models=models, eps=eps, affine=affine, kind=kind,
                                  out_format=quantity_format).reshape(shape)
    if gy is None:
        raise UsageError(f"quantity {quantity!r} needs the incoming gradient gy")
    gy2 = np.asarray(gy, dtype=np.float64)
    if gy2.size != x2.size:
        raise UsageError(f"gy must have the shape of x {np.shape(x)}, got {gy2.shape}")
    bound = _backward_tolerance(spec, x2, gy2.reshape(x2.shape), w, b, models=models, eps=eps, affine=affine, kind=kind,
                                quantity=quantity, grad_format=fmt, w_format=as_format(w_format or fmt))
    return bound.reshape(shape)


def _forward_tolerance(spec: NormSpec, x2: np.ndarray, w: ArrayLike | None, b: ArrayLike | None, *,
                       models: list[Model], eps: float, affine: str, kind: str, out_format: FloatFormat) -> np.ndarray:
    """The largest of the models' forward bounds, per element."""
    bound = np.zeros(x2.shape)
    for model in models:
        result = forward_bound(spec.name, x2, w, b, model=model, eps=eps, affine=affine, out_format=out_format, kind=kind)
        bound = np.maximum(bound, result.total)
    return bound


def _backward_tolerance(spec: NormSpec, x2: np.ndarray, gy2: np.ndarray, w: ArrayLike | None, b: ArrayLike | None, *,
                        models: list[Model], eps: float, affine: str, kind: str, quantity: str, grad_format: FloatFormat,
                        w_format: FloatFormat) -> np.ndarray:
    """The largest of the models' bounds on one gradient, per element."""
    bound = np.zeros(x2.shape if quantity == "gx" else x2.shape[1:])
    for model in models:
        if model.eps_mode != "inside":
            raise UsageError(f"model {model.name!r} has no backward bound (eps outside the root is not modelled)")
        result = backward_bound(spec.name, x2, gy2, w, b, model=model, eps=eps, affine=affine, grad_format=grad_format,
                                w_format=w_format, kind=kind, quantities=(quantity,))
        bound = np.maximum(bound, getattr(result, quantity))
    return bound


def _lp_tolerance(x2: np.ndarray, w: ArrayLike | None, b: ArrayLike | None, shape: tuple[int, ...], *,
                  p: float | str | None, eps: float, affine: str, contract: Contract, quantity: str,
                  out_format: FloatFormat) -> np.ndarray:
    if quantity != "y":
        raise UsageError("lpnorm has no backward bound yet (only the forward output y)")
    if contract.kind != "default":
        raise UsageError(f"lpnorm supports the contracts default and ulp:K, not {str(contract)!r}")
    result = stable_forward_bound(x2, w, b, p=parse_p(p), eps=eps, affine=affine, out_format=out_format)
    return result.total.reshape(shape)
