"""What a kernel suite hands the comparator: torch tensors (any device, any dtype torch has,
fp8 included) or numpy arrays (float32/float16/float64 or the ml_dtypes bfloat16 and fp8
types), turned into float64 values and the normtheory format they are exact in.

torch is never imported here: a tensor is recognised by duck typing, and its dtype is looked
up by name (`torch.bfloat16` -> "bfloat16"), so a numpy-only suite does not pay for torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normtheory.errors import UsageError
from normtheory.formats import FORMATS, FloatFormat

# torch dtype names (str(torch.bfloat16) == "torch.bfloat16") -> normtheory format names
_TORCH_FORMATS = {
    "torch.float64": "fp64", "torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16",
    "torch.float8_e4m3fn": "fp8_e4m3fn", "torch.float8_e5m2": "fp8_e5m2",
    "torch.float8_e4m3fnuz": "fp8_e4m3fnuz", "torch.float8_e5m2fnuz": "fp8_e5m2fnuz",
}
_NUMPY_FORMATS = {fmt.dtype: name for name, fmt in FORMATS.items()}


@dataclass(frozen=True)
class Values:
    """One array the comparator judges or reads: float64 values, exact in `fmt`."""

    values: np.ndarray
    fmt: FloatFormat

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape


def _is_torch_tensor(obj) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach") and hasattr(obj, "dtype")


def as_values(obj, name: str) -> Values:
    """float64 values and format of a tensor or array (UsageError for anything else)."""
    if _is_torch_tensor(obj):
        fmt_name = _TORCH_FORMATS.get(str(obj.dtype))
        if fmt_name is None:
            raise UsageError(f"{name}: dtype {obj.dtype} is not a floating-point format normtheory knows "
                             f"(known: {', '.join(_TORCH_FORMATS)})")
        tensor = obj.detach()
        # fp8 and bf16 have no numpy dtype in torch: widening to fp32 (or fp64) is exact
        wide = tensor.double() if fmt_name == "fp64" else tensor.float()
        return Values(wide.cpu().numpy().astype(np.float64), FORMATS[fmt_name])
    arr = np.asarray(obj)
    fmt_name = _NUMPY_FORMATS.get(arr.dtype)
    if fmt_name is None:
        raise UsageError(f"{name}: numpy dtype {arr.dtype} is not a floating-point format normtheory knows "
                         f"(float64, float32, float16, or ml_dtypes' bfloat16 / float8_*)")
    with np.errstate(invalid="ignore"):  # widening an ml_dtypes NaN warns
        return Values(arr.astype(np.float64), FORMATS[fmt_name])


def optional_values(obj, name: str) -> Values | None:
    return None if obj is None else as_values(obj, name)


def rows_of(values: np.ndarray) -> np.ndarray:
    """(..., n) -> (rows, n), a view where possible (a 1-D row becomes one row)."""
    if values.ndim == 0:
        raise UsageError("inputs must have at least one dimension (the normalized one)")
    return values.reshape(-1, values.shape[-1])
