"""The real Liger kernels on CUDA with the peer cases' inputs (the `gpu` tests). Called with
keyword arguments through liger_kernel.transformers.functional, as Liger's own tests call them;
in_place kernels get clones of the incoming gradients (they overwrite them)."""

from __future__ import annotations

import torch
from peer_cases import PeerCase


def _cuda(inputs: dict, grad: bool) -> dict:
    return {k: (v.cuda().requires_grad_(grad and k in ("x", "weight", "bias", "residual"))
                if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


def liger_outputs(case: PeerCase, inputs: dict, in_place: bool = False) -> dict:
    from liger_kernel.transformers import functional as lf

    t = _cuda(inputs, case.backward)
    offset = 1.0 if case.mode == "gemma" else 0.0
    if case.suite == "liger_layer_norm":
        y = lf.liger_layer_norm(X=t["x"], W=t["weight"], B=t["bias"], eps=case.eps)
        h = None
    elif case.residual:
        y, h = lf.liger_fused_add_rms_norm(X=t["x"], R=t["residual"], W=t["weight"], eps=case.eps, offset=offset,
                                          casting_mode=case.mode, in_place=in_place)
    else:
        y = lf.liger_rms_norm(X=t["x"], W=t["weight"], eps=case.eps, offset=offset, casting_mode=case.mode,
                              in_place=in_place)
        h = None
    outputs = {"y": y.detach().cpu()}
    if h is not None:
        outputs["h"] = h.detach().cpu()
    if case.backward:
        grads = [t["gy"].clone()] + ([t["gh"].clone()] if h is not None and t["gh"] is not None else [])
        torch.autograd.backward([y] + ([h] if len(grads) > 1 else []), grads)
        outputs["gx"] = t["x"].grad.cpu()
        outputs["gw"] = t["weight"].grad.cpu()
        if t["bias"] is not None:
            outputs["gb"] = t["bias"].grad.cpu()
    return outputs
