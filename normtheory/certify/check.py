"""Judging a recording: the same checks as `certify`, on outputs someone else produced.

Checks that need the kernel itself (determinism, safe-domain bisection, the search) are
reported as not applicable. The recording's own environment is carried into the certificate.
"""

from __future__ import annotations

import numpy as np

from normtheory.certify import certificate
from normtheory.certify.api import FUSED_OPS, _contract
from normtheory.certify.engine import RunState
from normtheory.certify.judge import Setting, hidden_mismatches, judge_batch
from normtheory.certify.metrics import Comparison, Summary
from normtheory.certify.runner import Batch
from normtheory.errors import UsageError
from normtheory.formats import get_format
from normtheory.registry import get_spec, resolve_params


def setting_from_meta(meta: dict, contract: str) -> Setting:
    op = meta["op"]
    base_op = FUSED_OPS.get(op, op)
    get_spec(base_op)
    params = resolve_params(base_op, eps=meta["eps"], eps_mode=meta["eps_mode"], affine=meta["affine"],
                            p=meta.get("p"))
    fmt = get_format(meta["format"])
    scaling = meta.get("scaling")
    if scaling is not None:
        from normtheory.precision.lowprecision.scaling import parse_scaling

        parse_scaling(scaling)  # UsageError on a malformed recipe
    return Setting(base_op, fmt, get_format(meta.get("w_format") or fmt.name),
                   get_format(meta.get("out_format") or fmt.name), params.eps, params.eps_mode, params.affine,
                   params.p, _contract(contract), scaling, bool(meta.get("fp8_cast_saturates", True)))


def _rows(cmp: Comparison, rows: slice) -> Comparison:
    fields = {f: getattr(cmp, f) for f in Comparison.__dataclass_fields__}
    return Comparison(**{f: None if value is None else value[rows] for f, value in fields.items()})


def _family_slices(meta: dict, rows: int):
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


def _judge_per_family(batch, outputs, setting, slices, state, source) -> None:
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


def _judge_in_one(batch, outputs, setting, slices, state) -> None:
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


def check_recording(arrays: dict, meta: dict, contract: str = "default", source: str = "") -> dict:
    setting = setting_from_meta(meta, contract)
    fused = meta["op"] in FUSED_OPS
    if fused and "residual" not in arrays:
        raise UsageError(f"{source}: a fused {meta['op']} recording needs `residual`")
    batch = Batch(arrays["x"], arrays.get("w"), arrays.get("b"), arrays.get("gy"), arrays.get("residual"),
                  label="recording")
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
    verdict, findings = certificate.verdict_and_findings(state, setting.contract)
    findings.append("not applicable to a recording: determinism, safe-domain bisection, hypothesis search")
    return {
        "schema": certificate.SCHEMA, "verdict": verdict, "kernel": meta["kernel"], "op": meta["op"],
        **setting.describe(), "d": meta.get("d", get_spec(setting.op).model_width(batch.x.shape[1])),
        "contract": setting.contract,
        "seed": meta.get("seed"), "budget": None, "max_abs": float(np.max(np.abs(batch.x))),
        "environment": meta.get("environment", {}), "recording": source,
        "inputs_tested": state.rows_tested,
        "families": [label for label, _ in _family_slices(meta, batch.x.shape[0])],
        "reference": certificate.REFERENCE_NOTE,
        "forward": certificate.block(state.forward),
        "backward": {q: certificate.block(s) for q, s in state.backward.items()},
        "determinism": "not applicable", "safe_domain": "not applicable", "search": "not applicable",
        "findings": findings,
    }
