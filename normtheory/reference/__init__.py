"""Correctly rounded references for every normalizer in the registry (never imports torch).

    correctly_rounded(op, x, w=None, b=None, *, format, eps=None, eps_mode="inside",
                      affine=None, p=None, gy=None) -> {"y", "gx", "gw", "gb"}
    evaluate(op, x, ..., prec=256) -> the same keys as mpmath numbers, unrounded
    resolve_settings(op, format, w_format=None, *, eps, eps_mode, affine, p) -> the validated
        settings of a call, before any array is read

Loaded lazily so that `normtheory --help` (which imports `normtheory.cli.reference`) does
not pay for numba and python-flint.
"""

__all__ = ["correctly_rounded", "evaluate", "resolve_settings"]


def __getattr__(name):
    if name in __all__:
        from normtheory.reference import api

        return getattr(api, name)
    raise AttributeError(f"module 'normtheory.reference' has no attribute {name!r}")
