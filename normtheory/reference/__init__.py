"""Correctly rounded references for every normalizer in the registry (never imports torch).

    correctly_rounded(op, x, w=None, b=None, *, format, eps=None, eps_mode="inside",
                      affine=None, p=None, gy=None) -> {"y", "gx", "gw", "gb"}
    evaluate(op, x, ..., prec=256) -> the same keys as mpmath numbers, unrounded
"""

from normtheory.reference.api import correctly_rounded, evaluate

__all__ = ["correctly_rounded", "evaluate"]
