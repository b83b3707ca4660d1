"""Judging one batch: the reference (correctly rounded to fp32) and the contract's bound for
every quantity, compared with what the kernel returned."""

from __future__ import annotations

import numpy as np

from normtheory.certify.metrics import REFERENCE_FORMAT, Comparison, compare
from normtheory.certify.runner import Batch, KernelFault
from normtheory.certify.setting import Setting, contract_argument
from normtheory.formats import FloatFormat
from normtheory.precision import tolerances
from normtheory.precision.lowprecision.scaled_check import judge_scaled_elements

ROW_QUANTITIES = ("y", "gx", "g_residual")  # shaped like x; gw and gb are column sums


def normalized_input(batch: Batch, setting: Setting) -> np.ndarray:
    """What the normalizer sees: x, or for fused kernels the correctly rounded x + residual."""
    if batch.residual is None:
        return batch.x
    with np.errstate(over="ignore"):
        return setting.fmt.round_to_float64(batch.x + batch.residual)


def reference(batch: Batch, setting: Setting) -> dict[str, np.ndarray]:
    # imported here, not at the top: `normtheory record` runs on GPU hosts that lack numba and
    # python-flint, and never needs the reference
    from normtheory.reference import correctly_rounded

    x = normalized_input(batch, setting)
    return correctly_rounded(setting.op, x, batch.w, batch.b, format=REFERENCE_FORMAT, eps=setting.eps,
                             eps_mode=setting.eps_mode, affine=setting.affine, p=setting.p, gy=batch.gy)


def bounds(batch: Batch, setting: Setting, exact: dict[str, np.ndarray], out_fmt: FloatFormat) -> dict[str, np.ndarray]:
    """The contract's bound of every quantity in `exact` (y, gx, gw, gb), from one evaluation of
    the bounds (precision.tolerances: each model's forward statistics are shared by all of them)."""
    x = normalized_input(batch, setting)
    finite_rows = np.isfinite(x).all(axis=1)
    if not finite_rows.all():  # NaN probes: those rows are judged by NaN propagation alone
        x = np.where(finite_rows[:, None], x, 0.0)
    quantities = tuple(exact)
    gradients = any(q != "y" for q in quantities)
    return tolerances(setting.op, x, batch.w, batch.b, format=setting.fmt.name, eps=setting.eps, affine=setting.affine,
                      contract=contract_argument(setting.bound_contract), out_format=out_fmt.name, exact=exact,
                      p=setting.p, quantities=quantities, gy=batch.gy if gradients else None,
                      w_format=setting.w_fmt.name if gradients else None)


def bound(quantity: str, batch: Batch, setting: Setting, exact: np.ndarray, out_fmt: FloatFormat) -> np.ndarray:
    """The contract's bound of one quantity (`bounds` for several)."""
    return bounds(batch, setting, {quantity: exact}, out_fmt)[quantity]


def _quantity_format(quantity: str, setting: Setting, out_fmt: FloatFormat) -> FloatFormat:
    if quantity == "y":
        return out_fmt
    return setting.w_fmt if quantity in ("gw", "gb") else setting.fmt


def judge_batch(batch: Batch, outputs: dict, setting: Setting, out_fmt: FloatFormat,
                ref: dict | None = None, quantities: tuple[str, ...] | None = None) -> dict[str, Comparison]:
    """{quantity: Comparison} for y and, when computed, gx, gw, gb (and the fused g_residual);
    only `quantities` when given. `ref` may carry the batch's reference from an earlier
    judgement (it does not depend on the contract)."""
    ref = reference(batch, setting) if ref is None else ref
    outputs = _undefined_rows_as_exact(batch, outputs, setting, ref)
    if setting.scaling is not None:
        return {"y": judge_scaled(batch, outputs, setting, ref)}
    judged = {}  # quantity -> the reference's name for it (∂/∂residual = ∂/∂x)
    for quantity in ("y", "gx", "gw", "gb", "g_residual"):
        ref_name = "gx" if quantity == "g_residual" else quantity
        if quantity in outputs and ref_name in ref and (quantities is None or quantity in quantities):
            judged[quantity] = ref_name
    exact = {ref_name: ref[ref_name].astype(np.float64) for ref_name in judged.values()}
    allowed = bounds(batch, setting, exact, out_fmt) if exact else {}
    return {quantity: compare(outputs[quantity], exact[ref_name], allowed[ref_name],
                              _quantity_format(quantity, setting, out_fmt))
            for quantity, ref_name in judged.items()}


def _undefined_rows_as_exact(batch: Batch, outputs: dict, setting: Setting, ref: dict) -> dict:
    """Rows holding ±inf but no NaN (e.g. a fused x + residual that overflows) are undefined, and
    no rule is judged on them (the NaN-propagation rule is for NaN inputs): their outputs are
    replaced by the exact ones."""
    x = normalized_input(batch, setting)
    undefined = ~np.isfinite(x).all(axis=1) & ~np.isnan(x).any(axis=1)
    if not undefined.any():
        return outputs
    outputs = dict(outputs)
    for quantity in ROW_QUANTITIES:
        ref_name = "gx" if quantity == "g_residual" else quantity
        if quantity in outputs and ref_name in ref:
            exact = ref[ref_name].astype(np.float64)
            outputs[quantity] = np.where(undefined[:, None], exact, outputs[quantity])
    return outputs


def hidden_mismatches(batch: Batch, outputs: dict, setting: Setting) -> int:
    """Fused kernels: entries of the returned x + residual that are not correctly rounded."""
    if "h" not in outputs:
        return 0
    expected = normalized_input(batch, setting)
    return int(np.sum(~((outputs["h"] == expected) | (np.isnan(outputs["h"]) & np.isnan(expected)))))


def judge_scaled(batch: Batch, outputs: dict, setting: Setting, ref: dict) -> Comparison:
    """A norm → fp8 kernel's (q, scale): the dequantized q/s against the exact y, judged by the
    fp8 output bound at the kernel's own scales (precision/lowprecision/scaled_check.py, the one
    copy of that judgement); scales the recipe cannot give count as failed elements of their group."""
    exact = ref["y"].astype(np.float64)
    assert setting.scaling is not None
    try:
        elements = judge_scaled_elements(
            setting.op, normalized_input(batch, setting), batch.w, batch.b, outputs["y"], outputs["scale"],
            format=setting.fmt.name, eps=setting.eps, affine=setting.affine, out_format=setting.out_fmt.name,
            scaling=setting.scaling, exact=exact, saturate=setting.saturate,
            contract=contract_argument(setting.bound_contract))
    except ValueError as exc:
        raise KernelFault(f"scale of shape {np.shape(outputs['scale'])} does not fit the {setting.scaling} recipe "
                          f"({exc})") from None
    comparison = compare(elements.dequantized, exact, elements.bound, setting.out_fmt, entry_scale=elements.entry_scale)
    assert elements.wrong_scale is not None  # certify refuses delayed scaling
    comparison.ratio = np.where(elements.wrong_scale, np.inf, comparison.ratio)
    comparison.wrong_scale = elements.wrong_scale
    return comparison
