"""torch.compile'd kernels whose certificate covers the compiled code, not an eager fallback.

Shapes and eps are pinned (`dynamic=False`, eps a constant of the traced graph). `CompiledKernel`
compiles on the first call it sees (the certifier calls `warm_up` once per shape and reports
that time apart); afterwards every call runs with `error_on_recompile`, so a guard failure or
a recompile-limit fallback to eager raises instead of silently running other code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from normtheory.kernels import eager


class CompiledKernel:
    def __init__(self, eager_fn: Callable[..., Any]) -> None:
        self.eager_fn = eager_fn
        # dynamo keeps its compiled variants (and counts the recompile limit) per code object,
        # across every torch.compile of that function: start each certification from a clean
        # cache, so earlier certifications in this process (other formats, other d) do not
        # push this one into the limit
        torch._dynamo.reset()
        self.compiled = torch.compile(eager_fn, fullgraph=True, dynamic=False)
        self.compile_seconds = 0.0
        self._warm_shapes: set = set()

    def warm_up(self, *args: Any) -> None:
        """Compile forward and backward for these argument shapes; time it."""
        key = tuple((tuple(a.shape), a.dtype, a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args)
        if key in self._warm_shapes:
            return
        start = time.perf_counter()
        # beyond the recompile limit dynamo would silently run eager code: make that an error
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
            self._compile_for(args)
        self.compile_seconds += time.perf_counter() - start
        self._warm_shapes.add(key)

    def _compile_for(self, args: tuple[Any, ...]) -> None:
        # copies with the same shapes, dtypes and requires_grad: the guards of the real call
        leaves = [a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a
                  for a in args]
        out = self.compiled(*leaves)
        first = out[0] if isinstance(out, tuple) else out
        if first.requires_grad:
            first.float().sum().backward()

    def __call__(self, *args: Any) -> Any:
        self.warm_up(*args)
        with torch._dynamo.config.patch(error_on_recompile=True):
            return self.compiled(*args)


def compiled_layer_norm() -> CompiledKernel:
    return CompiledKernel(eager.torch_layer_norm)


def compiled_rms_norm() -> CompiledKernel:
    return CompiledKernel(eager.torch_rms_norm)
