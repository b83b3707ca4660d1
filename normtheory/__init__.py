"""normtheory: numerics and theory checks for Transformer normalization layers.

`normtheory.FORMATS` (the floating-point formats) and `normtheory.REGISTRY` (the
normalizers) are loaded on first use, so that `normtheory --help` stays fast.
"""

__all__ = ["FORMATS", "REGISTRY"]


def __getattr__(name):
    if name == "FORMATS":
        from normtheory.formats import FORMATS

        return FORMATS
    if name == "REGISTRY":
        from normtheory.registry import REGISTRY

        return REGISTRY
    raise AttributeError(f"module 'normtheory' has no attribute {name!r}")
