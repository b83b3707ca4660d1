"""Torch tensors as reference inputs, read through their own methods (this layer never imports
torch), and the hook through which a higher layer runs the float64 pass on the tensor's device.

`to_host(t)`: any floating or integer tensor, on any device → a float64 numpy array (exact: every
value of bf16/fp16/fp32/fp8 and every integer below 2^53 is a float64). `register_device_backend`:
normtheory.kernels.cuda_reference registers itself when imported; `correctly_rounded` then hands
forward-only LayerNorm/RMSNorm calls on such tensors to it, and it returns the same result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from normtheory.errors import UsageError

_DEVICE_BACKENDS: list[tuple[Callable[[Any], bool], Callable]] = []


def is_tensor(value) -> bool:
    """A torch.Tensor, recognised without importing torch."""
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach") and hasattr(value, "device")


def to_host(value):
    """numpy arrays (and None) pass through; a tensor becomes a float64 numpy array."""
    if value is None or not is_tensor(value):
        return value
    tensor = value.detach()
    if tensor.is_complex() or str(tensor.dtype) == "torch.bool":
        raise UsageError(f"tensor of dtype {tensor.dtype} is not a real numeric tensor")
    # copy the narrow dtype across, widen on the host: exact either way, half the traffic
    return tensor.to("cpu").double().numpy()


def device_type(value) -> str:
    return str(value.device.type) if is_tensor(value) else "cpu"


def register_device_backend(accepts: Callable[[Any], bool], evaluate: Callable) -> None:
    """`accepts(x)`: whether `evaluate(op, x, w, b, format=..., eps=..., eps_mode=..., affine=...,
    p=..., w_format=...) -> (result, stats)` handles this input. Registering twice is a no-op."""
    if (accepts, evaluate) not in _DEVICE_BACKENDS:
        _DEVICE_BACKENDS.append((accepts, evaluate))


def device_evaluation(op, x, w, b, gy) -> Callable | None:
    """The registered device evaluation for a forward-only call on a non-CPU tensor, if any."""
    if gy is not None or not is_tensor(x) or device_type(x) == "cpu":
        return None
    for accepts, evaluate in _DEVICE_BACKENDS:
        if accepts(x):
            return evaluate
    return None


def host_array(value) -> np.ndarray | None:
    """to_host, then np.asarray (None stays None)."""
    value = to_host(value)
    return None if value is None else np.asarray(value)
