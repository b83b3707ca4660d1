"""Judging one batch: the reference (correctly rounded to fp32) and the contract's bound for
every quantity, compared with what the kernel returned."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from normtheory.certify.metrics import REFERENCE_FORMAT, Comparison, compare
from normtheory.certify.runner import Batch
from normtheory.formats import FloatFormat
from normtheory.precision import tolerance


@dataclass(frozen=True)
class Setting:
    """The normalizer being certified, as the reference and the bounds need it."""

    op: str  # base op of the registry (add_rmsnorm → rmsnorm)
    fmt: FloatFormat
    w_fmt: FloatFormat
    out_fmt: FloatFormat
    eps: float
    eps_mode: str
    affine: str
    p: float | None
    contract: str
    scaling: str | None = None  # fp8 output recipe (tensor, row, block:N, mx[:N])
    saturate: bool = True  # does the fp8 cast saturate (probed for the installed torch)

    def describe(self, out_fmt: FloatFormat | None = None) -> dict:
        """The setting as certificates and recordings write it (p: null, a number or "inf")."""
        return {
            "format": self.fmt.name, "w_format": self.w_fmt.name, "out_format": (out_fmt or self.out_fmt).name,
            "eps": self.eps, "eps_hex": self.eps.hex(), "eps_mode": self.eps_mode, "affine": self.affine,
            "p": None if self.p is None else ("inf" if math.isinf(self.p) else self.p),
            "scaling": self.scaling, "fp8_cast_saturates": self.saturate if self.scaling else None,
        }

    @property
    def bound_contract(self) -> str:
        # the default contract's models put eps inside the root; a kernel specified with eps
        # outside is held to the same careful algorithm with eps outside
        if self.contract == "default" and self.eps_mode == "outside":
            return "model:eps_outside"
        return self.contract


def normalized_input(batch: Batch, setting: Setting) -> np.ndarray:
    """What the normalizer sees: x, or for fused kernels the correctly rounded x + residual."""
    if batch.residual is None:
        return batch.x
    with np.errstate(over="ignore"):
        return setting.fmt.round_to_float64(batch.x + batch.residual)


def reference(batch: Batch, setting: Setting) -> dict[str, np.ndarray]:
    # imported here: `normtheory record` must run on a GPU host without numba/python-flint
    from normtheory.reference import correctly_rounded

    x = normalized_input(batch, setting)
    return correctly_rounded(setting.op, x, batch.w, batch.b, format=REFERENCE_FORMAT, eps=setting.eps,
                             eps_mode=setting.eps_mode, affine=setting.affine, p=setting.p, gy=batch.gy)


def bound(quantity: str, batch: Batch, setting: Setting, exact: np.ndarray, out_fmt: FloatFormat) -> np.ndarray:
    x = normalized_input(batch, setting)
    finite_rows = np.isfinite(x).all(axis=1)
    if not finite_rows.all():  # NaN probes: those rows are judged by NaN propagation alone
        x = np.where(finite_rows[:, None], x, 0.0)
    common = dict(format=setting.fmt.name, eps=setting.eps, affine=setting.affine,
                  contract=setting.bound_contract, out_format=out_fmt.name, exact=exact, p=setting.p)
    if quantity == "y":
        return tolerance(setting.op, x, batch.w, batch.b, **common)
    return tolerance(setting.op, x, batch.w, batch.b, **common, quantity=quantity, gy=batch.gy,
                     w_format=setting.w_fmt.name)


def judge_batch(batch: Batch, outputs: dict, setting: Setting, out_fmt: FloatFormat,
                ref: dict | None = None) -> dict[str, Comparison]:
    """{quantity: Comparison} for y and, when computed, gx, gw, gb (and the fused extras).
    `ref` may carry the batch's reference from an earlier judgement (it does not depend on
    the contract)."""
    ref = reference(batch, setting) if ref is None else ref
    x = normalized_input(batch, setting)
    # rows holding ±inf but no NaN (e.g. a fused x + residual that overflows) are undefined, and
    # no rule is judged on them (the NaN-propagation rule is for NaN inputs)
    undefined = ~np.isfinite(x).all(axis=1) & ~np.isnan(x).any(axis=1)
    if undefined.any():
        outputs = dict(outputs)
        for quantity, ref_name in (("y", "y"), ("gx", "gx"), ("g_residual", "gx")):
            if quantity in outputs and ref_name in ref:
                exact = ref[ref_name].astype(np.float64)
                outputs[quantity] = np.where(undefined[:, None], exact, outputs[quantity])
    if setting.scaling is not None:
        return {"y": judge_scaled(batch, outputs, setting, ref)}
    result = {}
    for quantity in ("y", "gx", "gw", "gb"):
        if quantity not in outputs or quantity not in ref:
            continue
        fmt = out_fmt if quantity in ("y",) else (setting.w_fmt if quantity in ("gw", "gb") else setting.fmt)
        exact = ref[quantity].astype(np.float64)
        result[quantity] = compare(outputs[quantity], exact, bound(quantity, batch, setting, exact, fmt), fmt)
    if "g_residual" in outputs and "gx" in ref:
        exact = ref["gx"].astype(np.float64)
        result["g_residual"] = compare(outputs["g_residual"], exact,
                                       bound("gx", batch, setting, exact, setting.fmt), setting.fmt)
    return result


def hidden_mismatches(batch: Batch, outputs: dict, setting: Setting) -> int:
    """Fused kernels: entries of the returned x + residual that are not correctly rounded."""
    if "h" not in outputs:
        return 0
    expected = normalized_input(batch, setting)
    return int(np.sum(~((outputs["h"] == expected) | (np.isnan(outputs["h"]) & np.isnan(expected)))))


def judge_scaled(batch: Batch, outputs: dict, setting: Setting, ref: dict) -> Comparison:
    """A norm → fp8 kernel's (q, scale): the dequantized q/s against the exact y, judged by
    precision.scaling.fp8_output_bound at the kernel's own scales; scales the recipe cannot
    give (precision.scaling.scale_interval) count as failed elements of their group."""
    from normtheory.precision.lowprecision.scaling import expand_scale, fp8_output_bound, parse_scaling, scale_interval

    x = normalized_input(batch, setting)
    exact = ref["y"].astype(np.float64)
    kind, block = parse_scaling(setting.scaling)
    q, scale = outputs["y"], outputs["scale"]
    try:
        entry_scale = expand_scale(scale, q.shape, kind, block)
    except ValueError as exc:
        from normtheory.certify.runner import KernelFault

        raise KernelFault(f"scale of shape {np.shape(scale)} does not fit the {setting.scaling} recipe ({exc})") from None
    common = dict(format=setting.fmt.name, eps=setting.eps, affine=setting.affine)
    # the fp32 pre-cast tolerance serves both the output bound and the scale check
    pre = tolerance(setting.op, x, batch.w, batch.b, **common, contract="default", out_format="fp32", exact=exact)
    bound = fp8_output_bound(setting.op, x, batch.w, batch.b, **common, out_format=setting.out_fmt.name,
                             scale=scale, scaling=setting.scaling, exact=exact, saturate=setting.saturate, pre=pre)
    with np.errstate(divide="ignore", invalid="ignore"):
        comparison = compare(q / entry_scale, exact, bound, setting.out_fmt, entry_scale=entry_scale)
    low, high = scale_interval(exact, pre, setting.out_fmt.name, setting.scaling)
    wrong_scale = expand_scale(~((low <= scale) & (scale <= high)), q.shape, kind, block).astype(bool)
    wrong_scale &= np.isfinite(exact)  # a group holding NaN gets whatever scale (MX: NaN); NaN rules judge it
    comparison.ratio = np.where(wrong_scale, np.inf, comparison.ratio)
    comparison.wrong_scale = wrong_scale
    return comparison
