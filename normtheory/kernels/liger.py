"""Liger Triton kernels (CUDA only; the optional `gpu` extra installs liger-kernel).

They are called through Liger's public nn.Modules with `torch.func.functional_call`, so the
weight and bias the certifier passes are the leaves autograd differentiates (gw, gb).
CPU CI cannot run them; it re-judges their recordings from an H200 (liger-kernel 0.8.5,
tests/data/certify/cuda/), and the `gpu` tests certify them on a CUDA host (docs/cuda.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from normtheory.errors import UsageError

if TYPE_CHECKING:
    import torch

KernelFn = Callable[["torch.Tensor", "torch.Tensor | None", "torch.Tensor | None", float], "torch.Tensor"]


def _modules() -> tuple[Any, Any]:
    try:
        from liger_kernel.transformers.layer_norm import LigerLayerNorm
        from liger_kernel.transformers.rms_norm import LigerRMSNorm
    except ImportError as exc:
        raise UsageError(f"liger kernels need the gpu extra (pip install 'normtheory[gpu]'): {exc}") from None
    return LigerLayerNorm, LigerRMSNorm


def liger_rms_norm() -> KernelFn:
    _, LigerRMSNorm = _modules()

    def run(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
        from torch.func import functional_call

        # in_place=False: Liger's default overwrites the incoming gradient dY with dX
        module = LigerRMSNorm(x.shape[-1], eps=eps, in_place=False).to(x.device)
        # torch's stub wants dict[str, Tensor]; a None weight (affine "none") is accepted at run time
        parameters: dict[str, Any] = {"weight": weight}
        y = functional_call(module, parameters, (x,))
        return y if bias is None else y + bias

    return run


def liger_layer_norm() -> KernelFn:
    LigerLayerNorm, _ = _modules()

    def run(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
        from torch.func import functional_call

        module = LigerLayerNorm(x.shape[-1], eps=eps).to(x.device)
        parameters: dict[str, Any] = {"weight": weight, "bias": bias}  # None accepted, as in liger_rms_norm
        return functional_call(module, parameters, (x,))

    return run
