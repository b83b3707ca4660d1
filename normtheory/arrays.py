"""Array files as docs/design.md specifies them, loaded safely and written without loss.

Reading: a float array whose values are representable in the named format, raw bits
(unsigned integers of the format's width), or the void arrays numpy returns for ml_dtypes
data (`|V2`, `|V1`), interpreted as the named format. Never unpickles (allow_pickle=False).
Writing: the format's own dtype where numpy reloads it without pickle (fp64, fp32, fp16),
raw bits otherwise (uint16 for bf16, uint8 for fp8); every `.npz` also holds `format`.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from normtheory.errors import UsageError
from normtheory.formats import FloatFormat
from normtheory.output_files import check_writable, replacing

_NATIVE = {"fp64", "fp32", "fp16"}


NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"  # every .npz is a zip archive
PICKLE_PROTOCOL_2_AND_LATER = b"\x80"


def _kind_of_file(path: str, name: str) -> str:
    """"npy" or "npz" from the file's first bytes; UsageError for anything else, saying what it
    looks like (numpy itself calls every unknown file "pickled data")."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(ZIP_MAGIC):
        return "npz"
    if head.startswith(PICKLE_PROTOCOL_2_AND_LATER):
        raise UsageError(f"{name}: {path!r} holds pickled objects, which are never loaded")
    what = "an empty file" if not head else "text" if _looks_like_text(head) else "not numpy data"
    raise UsageError(f"{name}: {path!r} is not a .npy or .npz file ({what}); save arrays with np.save or np.savez")


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read(path: str, name: str, *, require_name: bool = False, label: str | None = None) -> np.ndarray:
    """The array in a .npy file, or the array called `name` in a .npz (or its only array, unless
    `require_name`); messages name the input as `label` (default: `name`)."""
    try:
        return _read_named(path, name, require_name=require_name)
    except UsageError as exc:
        if label is None:
            raise
        raise UsageError(f"{label}{str(exc)[len(name):]}") from None


def _read_named(path: str, name: str, *, require_name: bool) -> np.ndarray:
    if not os.path.exists(path):
        raise UsageError(f"{name}: no such file {path!r}")
    if os.path.isdir(path):
        raise UsageError(f"{name}: {path!r} is a directory, not a .npy or .npz file")
    kind = _kind_of_file(path, name)
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UsageError(f"{name}: {path!r} holds pickled objects, which are never loaded") from None
        raise UsageError(f"{name}: {path!r} is not a readable .{kind} file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{name}: {path!r} is not a readable .{kind} file ({exc})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return loaded
    with loaded:
        keys = [k for k in loaded.files if k != "format"]
        key = name if name in keys else (keys[0] if len(keys) == 1 and not require_name else None)
        if key is None:
            held = ", ".join(keys) or "no arrays"
            raise UsageError(f"{name}: {path!r} holds {held}; none is named {name!r} "
                             f"(write it with np.savez(path, {name}=array))")
        try:
            return loaded[key]
        except ValueError as exc:
            raise UsageError(f"{name}: {path!r} array {key!r} cannot be loaded safely ({exc})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise UsageError(f"{name}: {path!r} array {key!r} is corrupt ({exc})") from None


def read_array(path: str, name: str, *, require_name: bool = False, label: str | None = None) -> np.ndarray:
    """The raw array (values or bits, not yet interpreted as a format): see `_read`."""
    return _read(path, name, require_name=require_name, label=label)


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
    check_writable(path, flag="--out", inputs=protected)
    payload = {name: encode(values, fmt) for name, values in arrays.items()}
    payload["format"] = np.array(fmt.name)
    # a handle, not the temporary's name: np.savez appends .npz to a name that lacks it
    with replacing(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **payload)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
