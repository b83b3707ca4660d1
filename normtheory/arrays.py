"""Array files as DESIGN.md specifies them, loaded safely and written without loss.

Reading: a float array whose values are representable in the named format, raw bits
(unsigned integers of the format's width), or the void arrays numpy returns for ml_dtypes
data (`|V2`, `|V1`), interpreted as the named format. Never unpickles (allow_pickle=False).
Writing: the format's own dtype where numpy reloads it without pickle (fp64, fp32, fp16),
raw bits otherwise (uint16 for bf16, uint8 for fp8); every `.npz` also holds `format`.
"""

from __future__ import annotations

import os
import tempfile
import zipfile

import numpy as np

from normtheory.errors import UsageError
from normtheory.formats import FloatFormat

_NATIVE = {"fp64", "fp32", "fp16"}


def _read(path: str, name: str) -> np.ndarray:
    if not os.path.exists(path):
        raise UsageError(f"{name}: no such file {path!r}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UsageError(f"{name}: {path!r} holds pickled objects, which are never loaded") from None
        raise UsageError(f"{name}: {path!r} is not a readable .npy/.npz file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{name}: {path!r} is not a readable .npy/.npz file ({exc})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = [k for k in loaded.files if k != "format"]
            key = name if name in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise UsageError(f"{name}: {path!r} holds several arrays ({', '.join(keys)}); none is named {name!r}")
            try:
                return loaded[key]
            except ValueError as exc:
                raise UsageError(f"{name}: {path!r} array {key!r} cannot be loaded safely ({exc})") from None
    return loaded


def decode(arr: np.ndarray, fmt: FloatFormat, name: str) -> np.ndarray:
    """Values of `arr` as float64, interpreting bit patterns as `fmt`; UsageError otherwise."""
    kind = arr.dtype.kind
    if kind == "V" or kind == "u":
        if arr.dtype.itemsize != fmt.dtype.itemsize:
            raise UsageError(f"{name}: {arr.dtype} data cannot be {fmt.name} bits ({fmt.bits}-bit format)")
        bits = np.ascontiguousarray(arr).view(fmt.bits_dtype)
        if fmt.width < fmt.bits and (bits >> fmt.width).any():  # fp6/fp4: one value per byte
            raise UsageError(f"{name}: raw bits of {fmt.name} must be below 2**{fmt.width}, got {int(bits.max())}")
        return fmt.to_float64(fmt.from_bits(bits))
    if kind in "fi" or arr.dtype == fmt.dtype:
        with np.errstate(invalid="ignore"):
            values = arr.astype(np.float64)
    else:
        raise UsageError(f"{name}: unsupported dtype {arr.dtype} (float values or {fmt.bits}-bit raw bits)")
    representable = fmt.is_representable(values)
    if not representable.all():
        index = int(np.flatnonzero(~representable.ravel())[0])
        value = float(values.ravel()[index])
        raise UsageError(f"{name}: value {value!r} at flat index {index} is not representable in {fmt.name}")
    return values


def load_array(path: str, fmt: FloatFormat, name: str) -> np.ndarray:
    return decode(_read(path, name), fmt, name)


def encode(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """float64 values already in `fmt` -> the array written to disk."""
    with np.errstate(invalid="ignore"):
        typed = np.asarray(values).astype(fmt.dtype)
    return typed if fmt.name in _NATIVE else fmt.to_bits(typed)


def save_npz(path: str, arrays: dict[str, np.ndarray], fmt: FloatFormat, protected: tuple[str, ...] = ()) -> None:
    """Write `arrays` (format values) to `path` atomically; refuse to overwrite an input file."""
    target = os.path.abspath(path)
    if os.path.exists(target):
        for other in protected:
            if other and os.path.exists(other) and os.path.samefile(other, target):
                raise UsageError(f"--out {path!r} is one of the input files; choose another name")
    directory = os.path.dirname(target) or "."
    if not os.path.isdir(directory):
        raise UsageError(f"--out: directory {directory!r} does not exist")
    payload = {name: encode(values, fmt) for name, values in arrays.items()}
    payload["format"] = np.array(fmt.name)
    handle, temporary = tempfile.mkstemp(suffix=".npz", dir=directory)
    os.close(handle)
    try:
        np.savez(temporary, **payload)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
