"""Recording files (docs/design.md): a kernel's inputs and outputs as raw bits plus a JSON `meta`,
so a GPU run can be judged later on any CPU machine (`normtheory check`).

gw and gb are column sums over the rows of one kernel call: shape (n,) when one call covered
every row, (families, n) when each family (meta `families`) had its own call, as `normtheory
record` does with backward.

Loaded with `allow_pickle=False`; every problem with a file (not an npz, truncated, pickled
object arrays, missing or inconsistent arrays, bad meta) is a UsageError (exit 2).
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from normtheory.certify.runner import Batch
from normtheory.errors import UsageError
from normtheory.formats import FORMATS, FloatFormat, get_format
from normtheory.output_files import replacing
from normtheory.registry import FUSED_OPS

SCHEMA = "normtheory.recording/1"
ROW_ARRAYS = ("x", "y", "residual", "gy", "gx", "h", "g_residual")
VECTOR_ARRAYS = ("w", "b", "gw", "gb")


def _format_of(name: str, meta: dict) -> FloatFormat:
    fmt, w_fmt = meta["format"], meta.get("w_format") or meta["format"]
    out_fmt = meta.get("out_format") or meta["format"]
    return get_format({"y": out_fmt, "w": w_fmt, "b": w_fmt, "gw": w_fmt, "gb": w_fmt, "scale": "fp32"}.get(name, fmt))


def save(path: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write arrays (float64 values representable in their formats) as raw bits, plus meta."""
    # Any, not np.ndarray: mypy matches **out against savez_compressed's `allow_pickle: bool` as well
    # (numpy >= 2.1 stubs); passing allow_pickle explicitly instead would save an array of that name
    # under numpy < 2.1, which pyproject allows
    out: dict[str, Any] = {}
    for name, values in arrays.items():
        if values is None:
            continue
        fmt = _format_of(name, meta)
        out[name] = fmt.to_bits(np.asarray(values, dtype=np.float64))
    out["meta"] = np.array(json.dumps({"schema": SCHEMA, **meta}, default=str))
    # a handle, not the temporary's name: np.savez_compressed appends .npz to a name that lacks it
    with replacing(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **out)


def load(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """(float64 arrays, meta) from a recording; UsageError on anything malformed."""
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    try:
        # our own file handle: numpy leaks its handle when a truncated archive fails to open
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":  # every .npz is a zip archive
                raise UsageError(f"{path}: corrupt or truncated recording (not a zip archive)")
            handle.seek(0)
            with np.load(handle, allow_pickle=False) as data:
                raw = {name: data[name] for name in data.files}
    except UsageError:
        raise
    except ValueError as exc:  # object arrays need pickle: refused
        raise UsageError(f"{path}: refused to load ({_first_line(exc)}); recordings hold no pickled objects") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise UsageError(f"{path}: corrupt or truncated recording ({_first_line(exc)})") from None
    meta = _parse_meta(path, raw.pop("meta", None))
    arrays = {}
    for name, bits in raw.items():
        if name not in ROW_ARRAYS + VECTOR_ARRAYS + ("scale",):
            raise UsageError(f"{path}: unexpected array {name!r}")
        arrays[name] = _decode(path, name, bits, _format_of(name, meta))
    _check_shapes(path, arrays)
    _check_complete(path, arrays, meta)
    return arrays, meta


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__


def _parse_meta(path: str, raw: np.ndarray | None) -> dict:
    if raw is None:
        raise UsageError(f"{path}: no `meta` array")
    if raw.shape != () or raw.dtype.kind != "U":
        raise UsageError(f"{path}: `meta` must be a 0-d unicode array holding JSON")
    try:
        meta = json.loads(str(raw[()]))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: `meta` is not JSON ({exc.msg})") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{path}: `meta` must be a JSON object")
    for key in ("op", "format", "eps", "eps_mode", "affine", "kernel"):
        if key not in meta:
            raise UsageError(f"{path}: meta lacks {key!r}")
    for key in ("format", "w_format", "out_format"):
        if meta.get(key) is not None and meta[key] not in FORMATS:
            raise UsageError(f"{path}: meta {key} {meta[key]!r} is not a known format")
    return meta


def _decode(path: str, name: str, bits: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    if bits.dtype != fmt.bits_dtype:
        raise UsageError(f"{path}: array {name} must be raw {fmt.name} bits ({np.dtype(fmt.bits_dtype).name}), "
                         f"got {bits.dtype}")
    return fmt.from_bits(bits).astype(np.float64)


def _check_shapes(path: str, arrays: dict[str, np.ndarray]) -> None:
    if "x" not in arrays or "y" not in arrays:
        raise UsageError(f"{path}: a recording needs arrays x and y")
    x = arrays["x"]
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise UsageError(f"{path}: x must have shape (rows, n), got {x.shape}")
    for name in ROW_ARRAYS:
        if name in arrays and arrays[name].shape != x.shape:
            raise UsageError(f"{path}: {name} has shape {arrays[name].shape}, x has {x.shape}")
    for name in VECTOR_ARRAYS:
        # gw and gb may also be per-family column sums, (families, n): check.py matches them to meta
        per_family = name in ("gw", "gb") and arrays.get(name) is not None and arrays[name].ndim == 2
        if name in arrays and not per_family and arrays[name].shape != (x.shape[1],):
            raise UsageError(f"{path}: {name} must have shape ({x.shape[1]},), got {arrays[name].shape}")
        if per_family and arrays[name].shape[1] != x.shape[1]:
            raise UsageError(f"{path}: {name} must have {x.shape[1]} columns, got {arrays[name].shape}")
    if "gx" in arrays and "gy" not in arrays:
        raise UsageError(f"{path}: gx given without gy")


def _check_complete(path: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Every output the recorded call must have produced is there: a backward recording (gy
    given) holds gx, and gw / gb for a weight / bias; a fused one holds x + residual (h), and
    g_residual with a backward. A missing one was lost or deleted: the file is corrupt, not a
    recording with fewer checks."""
    fused = meta["op"] in FUSED_OPS
    needed = {"residual": fused, "h": fused}
    if "gy" in arrays:
        needed.update(gx=True, gw="w" in arrays, gb="b" in arrays, g_residual=fused)
    missing = [name for name, wanted in needed.items() if wanted and name not in arrays]
    if missing:
        raise UsageError(f"{path}: corrupt recording: {', '.join(missing)} missing "
                         f"({'a backward recording has gy and every gradient' if 'gy' in arrays else 'a fused recording'})")


def meta_for(config, *, op: str, kernel_name: str, environment: dict, families=None) -> dict:
    """A recording's meta: the setting as the certificate writes it, the width, the kernel."""
    return {"op": op, **config.setting.describe(), "d": config.d, "kernel": kernel_name, "environment": environment,
            "families": families or []}


def batch_arrays(batch: Batch, outputs: dict) -> dict:
    arrays = {"x": batch.x, "w": batch.w, "b": batch.b, "gy": batch.gy, "residual": batch.residual}
    arrays.update({k: v for k, v in outputs.items() if k in ROW_ARRAYS + VECTOR_ARRAYS + ("scale",)})
    return arrays


def worst_paths(path: str) -> dict[str, str]:
    """Where --worst-out PATH puts each worst batch: the forward one at PATH, the backward one
    and the search's next to it."""
    stem = path[:-4] if path.endswith(".npz") else path
    return {"forward": path, "backward": stem + ".backward.npz", "search": stem + ".search.npz"}


def save_worst(path: str, config, state, *, environment: dict) -> list[str]:
    """The batch with the largest forward error/bound, the backward one and the search's worst
    row (each when it is a batch of its own): anyone can replay them with `normtheory check`.
    Returns the files written."""
    written: list[str] = []
    saved: list = []
    for key, target in worst_paths(path).items():
        if key not in state.worst:
            continue
        ratio, batch, outputs = state.worst[key]
        if any(batch is other for other in saved):
            continue
        saved.append(batch)
        rows = batch.x.shape[0]
        save(target, batch_arrays(batch, outputs),
             meta_for(config, op=config.setting.op_name, kernel_name=config.kernel.name, environment=environment,
                      families=[[batch.label, 0, rows]]) | {"err_over_bound": ratio, "seed": config.seed})
        written.append(target)
    return written
