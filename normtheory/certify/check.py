"""Judging a recording: the same checks as `certify`, on outputs someone else produced.

Checks that need the kernel itself (determinism, safe-domain bisection, the search) are
reported as not applicable. The recording's own environment is carried into the certificate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from normtheory.certify import certificate
from normtheory.certify.engine import RunState
from normtheory.certify.judge import hidden_mismatches, judge_batch
from normtheory.certify.metrics import Comparison, Summary
from normtheory.certify.runner import Batch
from normtheory.certify.setting import Setting, make_setting
from normtheory.errors import UsageError
from normtheory.precision.contract import Contract


def setting_from_meta(meta: dict, contract: str | Contract) -> Setting:
    """The recording's setting, through the same constructor `normtheory certify` uses."""
    return make_setting(meta["op"], format=meta["format"], w_format=meta.get("w_format"),
                        out_format=meta.get("out_format"), eps=meta["eps"], eps_mode=meta["eps_mode"],
                        affine=meta["affine"], p=meta.get("p"), contract=contract, scaling=meta.get("scaling"),
                        saturate=bool(meta.get("fp8_cast_saturates", True)))


def _width(meta: dict, setting: Setting, x: np.ndarray, source: str) -> int:
    """The model width d: meta's, which must agree with the arrays (a corrupt file otherwise)."""
    d = setting.spec.model_width(x.shape[1])
    if "d" in meta and meta["d"] != d:
        raise UsageError(f"{source}: corrupt recording: meta says d = {meta['d']!r}, but x has {x.shape[1]} entries "
                         f"per row (d = {d} for {setting.op})")
    return d


def _rows(cmp: Comparison, rows: slice) -> Comparison:
    """cmp restricted to `rows`: every array field sliced, the None ones left None."""
    fields = {f: getattr(cmp, f) for f in Comparison.__dataclass_fields__}
    # Any: each value is an array or None, which mypy cannot match field by field
    sliced: dict[str, Any] = {f: None if value is None else value[rows] for f, value in fields.items()}
    return Comparison(**sliced)


def _family_slices(meta: dict, rows: int) -> list[tuple[str, slice]]:
    spans = meta.get("families") or []
    slices = []
    for entry in spans:
        try:
            label, start, stop = str(entry[0]), int(entry[1]), int(entry[2])
        except (TypeError, ValueError, IndexError):
            raise UsageError(f"meta families entry {entry!r} is not [label, start, stop]") from None
        if not 0 <= start < stop <= rows:
            raise UsageError(f"meta families entry {entry!r} lies outside the {rows} rows")
        slices.append((label, slice(start, stop)))
    return slices or [("recording", slice(0, rows))]


def _judge_per_family(batch: Batch, outputs: dict, setting: Setting, slices: list[tuple[str, slice]], state: RunState,
                      source: str) -> None:
    """Recordings with one kernel call per family: gw and gb are that family's column sums."""
    for quantity in ("gw", "gb"):
        if quantity in outputs and outputs[quantity].shape[0] != len(slices):
            raise UsageError(f"{source}: {quantity} holds {outputs[quantity].shape[0]} column sums, "
                             f"meta lists {len(slices)} families")
    for index, (label, rows) in enumerate(slices):
        part = Batch(batch.x[rows], batch.w, batch.b, None if batch.gy is None else batch.gy[rows],
                     None if batch.residual is None else batch.residual[rows], label=label)
        part_outputs = {q: (v[index] if q in ("gw", "gb") else v[rows]) for q, v in outputs.items()}
        comparisons = judge_batch(part, part_outputs, setting, setting.out_fmt)
        state.hidden_mismatch += hidden_mismatches(part, part_outputs, setting)
        where = {"rows": [rows.start, rows.stop]}
        state.forward.add(comparisons["y"], label, where)
        for quantity in ("gx", "g_residual", "gw", "gb"):
            if quantity in comparisons:
                state.backward.setdefault(quantity, Summary()).add(comparisons[quantity], label, where)


def _judge_in_one(batch: Batch, outputs: dict, setting: Setting, slices: list[tuple[str, slice]],
                  state: RunState) -> None:
    """Recordings from one kernel call over all rows (fp8 outputs, and recordings made before
    per-family calls): gw and gb are single column sums over every family."""
    comparisons = judge_batch(batch, outputs, setting, setting.out_fmt)
    state.hidden_mismatch = hidden_mismatches(batch, outputs, setting)
    for label, rows in slices:
        state.forward.add(_rows(comparisons["y"], rows), label, {"rows": [rows.start, rows.stop]})
        for quantity in ("gx", "g_residual"):
            if quantity in comparisons:
                state.backward.setdefault(quantity, Summary()).add(
                    _rows(comparisons[quantity], rows), label, {"rows": [rows.start, rows.stop]})
    for quantity in ("gw", "gb"):
        if quantity in comparisons:
            state.backward.setdefault(quantity, Summary()).add(comparisons[quantity], "all rows", {})


def check_recording(arrays: dict, meta: dict, contract: str | Contract = "default", source: str = "") -> dict:
    setting = setting_from_meta(meta, contract)
    if setting.fused and "residual" not in arrays:
        raise UsageError(f"{source}: a fused {meta['op']} recording needs `residual`")
    batch = Batch(arrays["x"], arrays.get("w"), arrays.get("b"), arrays.get("gy"), arrays.get("residual"),
                  label="recording")
    d = _width(meta, setting, batch.x, source)
    outputs = {k: arrays[k] for k in ("y", "gx", "gw", "gb", "h", "g_residual", "scale") if k in arrays}
    if setting.scaling is not None and "scale" not in outputs:
        raise UsageError(f"{source}: an fp8 recording with scaling {setting.scaling} needs `scale`")
    state = RunState(out_fmt=setting.out_fmt)
    state.rows_tested = batch.x.shape[0]
    slices = _family_slices(meta, batch.x.shape[0])
    if any(outputs.get(q) is not None and outputs[q].ndim == 2 for q in ("gw", "gb")):
        _judge_per_family(batch, outputs, setting, slices, state, source)
    else:
        _judge_in_one(batch, outputs, setting, slices, state)
    state.deterministic = None
    run = certificate.Run(kernel=meta["kernel"], d=d, seed=meta.get("seed"), budget=None,
                          max_abs=float(np.max(np.abs(batch.x))), environment=meta.get("environment", {}),
                          families=[label for label, _ in slices], recording=source)
    return certificate.build(setting, state, run)
