"""Assertions for kernel suites and CI.

- `assert_close_to_exact(actual, op=..., x=..., ...)`: judge outputs you already have (y,
  gradients, the fused residual, an fp8 output with its scale) against the exact result and
  the derived bound (comparator.py; docs/kernel_authors.md).
- `assert_precision_safe(kernel, op=..., format=..., d=...)`: certify a kernel that normtheory
  calls itself (precision_safe.py).

Loaded lazily: importing normtheory.testing (as the pytest plugin does) costs nothing.
"""

__all__ = ["assert_close_to_exact", "assert_precision_safe", "Verdict"]

_HOMES = {"assert_close_to_exact": "comparator", "assert_precision_safe": "precision_safe", "Verdict": "judge"}


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"normtheory.testing.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'normtheory.testing' has no attribute {name!r}")
