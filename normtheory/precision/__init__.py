"""Precision model: emulated kernels, a-priori error bounds, domains, and `tolerance`.

`tolerance(...)` is the one place the rest of normtheory gets a tolerance from: it returns,
per output element, the largest |ŷ − y| (y exact) that a contract allows.

Contracts:
- "default": the kernel is a careful GPU kernel — fp32 accumulation over a warp (32 lanes)
  or more per row with a butterfly tree, two-pass or Welford statistics, rsqrt within 2 fp32
  ulps, FMA contraction allowed, one rounding at the output. The tolerance is the larger of
  the worst-case bounds of the `default` (two-pass) and `welford` models (bounds.py).
- "model:NAME": the worst-case bound of the named model (models.MODELS).
- "ulp:K": K ulps of the output format at the exact value (`exact` must be given).
"""

from __future__ import annotations

import numpy as np

from normtheory.formats import FORMATS
from normtheory.precision.bounds import forward_bound
from normtheory.precision.models import DEFAULT_FAMILY, MODELS, get_model

__all__ = ["tolerance", "MODELS", "forward_bound"]


def tolerance(op: str, x, w=None, b=None, *, format, eps: float, affine: str = "none",
              contract: str = "default", out_format=None, exact=None, kind: str = "worst") -> np.ndarray:
    """Per-element allowed |ŷ − y| (float64 array shaped like x; inf where no bound holds).

    `format` is x's format, `out_format` the output's (default: `format`). `kind` is
    "worst" (a guarantee) or "probabilistic" (the √n form, labelled as such in reports).
    """
    from normtheory.errors import UsageError

    out = FORMATS[out_format or (format if isinstance(format, str) else format.name)]
    x2 = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if contract == "default":
        models = [MODELS[name] for name in DEFAULT_FAMILY]
    elif contract.startswith("model:"):
        models = [get_model(contract.split(":", 1)[1])]
    elif contract.startswith("ulp:"):
        try:
            k = float(contract.split(":", 1)[1])
        except ValueError:
            raise UsageError(f"contract {contract!r}: K in ulp:K must be a number") from None
        if exact is None:
            raise UsageError("contract ulp:K needs the exact outputs")
        return k * out.ulp(np.asarray(exact, dtype=np.float64)).reshape(np.shape(x))
    else:
        raise UsageError(f"unknown contract {contract!r}; known: default, model:NAME, ulp:K")
    bound = np.zeros(x2.shape)
    for model in models:
        result = forward_bound(op, x2, w, b, model=model, eps=eps, affine=affine, out_format=out, kind=kind)
        bound = np.maximum(bound, result.total)
    return bound.reshape(np.shape(x))
