"""Calling a kernel on float64 inputs and getting float64 outputs back, with every fault of
the kernel (it raises, returns the wrong shape or dtype, or no gradient) turned into a
`KernelFault` — a failed certificate, never a crash of normtheory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from normtheory.formats import FloatFormat
from normtheory.kernels import dtypes


class KernelFault(Exception):
    """The kernel under test misbehaved; the message is a finding for the certificate."""


@dataclass
class Batch:
    """Rows for one kernel call, as float64 values exactly representable in their formats."""

    x: np.ndarray  # (rows, n)
    w: np.ndarray | None
    b: np.ndarray | None
    gy: np.ndarray | None
    residual: np.ndarray | None = None  # fused kernels: x + residual is normalized
    label: str = ""  # family (or search / domain probe) the rows come from


@dataclass(frozen=True)
class CallSpec:
    fmt: FloatFormat
    w_fmt: FloatFormat
    out_fmt: FloatFormat
    eps: float
    p: float | None
    fused: bool
    device: str = "cpu"
    autocast: bool = False
    scaling: str | None = None  # fp8 outputs: the kernel gets scaling=... and returns (y, scale)


def torch_dtype(fmt: FloatFormat) -> torch.dtype:
    return dtypes.torch_dtype(fmt.name)


def _optional_tensor(values: np.ndarray | None, fmt: FloatFormat, device: str, grad: bool) -> torch.Tensor | None:
    return None if values is None else _tensor(values, fmt, device, grad)


def _tensor(values: np.ndarray, fmt: FloatFormat, device: str, grad: bool) -> torch.Tensor:
    # float64 -> narrow dtype is exact here: every value is representable (inputs are rounded)
    t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)).to(device).to(torch_dtype(fmt))
    return t.requires_grad_(grad)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu").to(torch.float64).numpy()


def run_kernel(fn: Callable, batch: Batch, spec: CallSpec, *, backward: bool) -> dict[str, np.ndarray | str]:
    """{"y", and with backward "gx", "gw", "gb" (and "h", "g_residual" for fused kernels)}; under
    autocast also "y_format", the name of the format autocast gave y."""
    want_grad = backward and batch.gy is not None
    x = _tensor(batch.x, spec.fmt, spec.device, want_grad)
    w = _optional_tensor(batch.w, spec.w_fmt, spec.device, want_grad)
    b = _optional_tensor(batch.b, spec.w_fmt, spec.device, want_grad)
    residual = _optional_tensor(batch.residual, spec.fmt, spec.device, want_grad) if spec.fused else None
    params: dict[str, float | str | torch.dtype] = {} if spec.p is None else {"p": spec.p}
    if spec.scaling is not None:  # fp8-output kernels: the recipe and the element dtype
        params.update(scaling=spec.scaling, out_dtype=torch_dtype(spec.out_fmt))
    try:
        context = (torch.autocast(spec.device, dtype=torch_dtype(spec.fmt)) if spec.autocast
                   else torch.autocast(spec.device, enabled=False))
        with context:
            out = fn(x, residual, w, b, spec.eps) if spec.fused else fn(x, w, b, spec.eps, **params)
    except Exception as exc:  # whatever the kernel raises is a finding about the kernel
        raise KernelFault(f"kernel raised {type(exc).__name__}: {_short(exc)}") from None
    scale = None
    if spec.scaling is not None:
        out, scale = _unpack_scaled(out)
    y, hidden = _unpack(out, spec.fused)
    _check_tensor("y", y, x.shape, None if spec.autocast else torch_dtype(spec.out_fmt))
    result: dict[str, np.ndarray | str] = {"y": _numpy(y)}
    if spec.autocast:  # autocast decides the output dtype (layer_norm, for one, runs in fp32)
        if y.dtype not in dtypes.FORMAT_OF:
            raise KernelFault(f"kernel returned y of dtype {y.dtype} under autocast, not a certifiable format")
        result["y_format"] = dtypes.FORMAT_OF[y.dtype]
    if scale is not None:
        result["scale"] = _numpy(scale)
    if spec.fused:
        _check_tensor("x + residual", hidden, x.shape, torch_dtype(spec.fmt))
        result["h"] = _numpy(hidden)
    if want_grad:
        result.update(_gradients(y, x, w, b, residual, batch.gy, spec))
    return result


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _unpack(out: object, fused: bool) -> tuple[Any, Any]:
    if fused:
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise KernelFault(f"fused kernel must return (y, x + residual), got {type(out).__name__}")
        return out[0], out[1]
    if isinstance(out, (tuple, list)):
        raise KernelFault(f"kernel returned a {type(out).__name__}, expected one tensor")
    return out, None


def _unpack_scaled(out: object) -> tuple[Any, torch.Tensor]:
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise KernelFault(f"an fp8-output kernel must return (y, scale), got {type(out).__name__}")
    y, scale = out
    if not isinstance(scale, torch.Tensor) or scale.dtype != torch.float32:
        raise KernelFault(f"the scale must be a float32 tensor, got {getattr(scale, 'dtype', type(scale).__name__)}")
    return y, scale


def _check_tensor(name: str, t: object, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype | None) -> None:
    if not isinstance(t, torch.Tensor):
        raise KernelFault(f"kernel returned {type(t).__name__} for {name}, expected a torch.Tensor")
    if tuple(t.shape) != tuple(shape):
        raise KernelFault(f"kernel returned {name} of shape {tuple(t.shape)}, expected {tuple(shape)}")
    if dtype is not None and t.dtype != dtype:
        raise KernelFault(f"kernel returned {name} of dtype {t.dtype}, expected {dtype}")


def _gradients(y, x, w, b, residual, gy_values, spec):
    gy = _tensor(gy_values, spec.fmt, spec.device, False).to(y.dtype)
    leaves = [t for t in (x, w, b, residual) if t is not None]
    try:
        grads = torch.autograd.grad(y, leaves, grad_outputs=gy, allow_unused=True)
    except Exception as exc:
        raise KernelFault(f"kernel's backward raised {type(exc).__name__}: {_short(exc)}") from None
    by_leaf = dict(zip([id(t) for t in leaves], grads))
    result = {}
    for name, leaf in (("gx", x), ("gw", w), ("gb", b), ("g_residual", residual)):
        if leaf is None:
            continue
        grad = by_leaf[id(leaf)]
        if grad is None:
            raise KernelFault(f"kernel's backward gives no gradient for {name[1:]}")
        _check_tensor(name, grad, leaf.shape, leaf.dtype)
        result[name] = _numpy(grad)
    return result
