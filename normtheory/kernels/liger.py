"""Liger Triton kernels (CUDA only; the optional `gpu` extra installs liger-kernel).

They are called through Liger's public nn.Modules with `torch.func.functional_call`, so the
weight and bias the certifier passes are the leaves autograd differentiates (gw, gb).
CPU CI cannot run them; it re-judges their recordings from an H200 (liger-kernel 0.8.5,
tests/data/certify/cuda/), and the `gpu` tests certify them on a CUDA host (docs/cuda.md).
"""

from __future__ import annotations

from normtheory.errors import UsageError


def _modules():
    try:
        from liger_kernel.transformers.layer_norm import LigerLayerNorm
        from liger_kernel.transformers.rms_norm import LigerRMSNorm
    except ImportError as exc:
        raise UsageError(f"liger kernels need the gpu extra (pip install 'normtheory[gpu]'): {exc}") from None
    return LigerLayerNorm, LigerRMSNorm


def liger_rms_norm():
    _, LigerRMSNorm = _modules()

    def run(x, weight, bias, eps):
        from torch.func import functional_call

        # in_place=False: Liger's default overwrites the incoming gradient dY with dX
        module = LigerRMSNorm(x.shape[-1], eps=eps, in_place=False).to(x.device)
        y = functional_call(module, {"weight": weight}, (x,))
        return y if bias is None else y + bias

    return run


def liger_layer_norm():
    LigerLayerNorm, _ = _modules()

    def run(x, weight, bias, eps):
        from torch.func import functional_call

        module = LigerLayerNorm(x.shape[-1], eps=eps).to(x.device)
        return functional_call(module, {"weight": weight, "bias": bias}, (x,))

    return run
