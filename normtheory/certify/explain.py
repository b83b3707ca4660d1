"""Explaining a failure: which named algorithm model's bound the kernel does meet.

A kernel that fails `default` is often a known, deliberate algorithm (HF's llama cast
placement, one-pass statistics, accumulation in the input's precision). Re-judging the same
outputs under each model's bound (the reference is reused: it does not depend on the contract)
turns "fails" into "fails `default`; consistent with model:llama (max error/bound 0.92)" — per
quantity, since a kernel's forward and backward may be different algorithms.

A kernel may also compute another formula: eps added after the square root instead of inside
it. No model of an eps-inside kernel describes that (a model whose bound happens to be vast on
tiny rows, such as fp16 accumulation, would "meet" it for the wrong reason), so the forward is
also judged against the eps-outside formula itself (its own reference and the eps_outside
model's bound); when that fits, it is the explanation given.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from normtheory.certify.findings import EPS_OUTSIDE_EXPLANATION
from normtheory.certify.judge import judge_batch
from normtheory.errors import UsageError
from normtheory.formats import FloatFormat
from normtheory.precision.contract import DEFAULT, Contract
from normtheory.precision.models import DEFAULT_FAMILY, MODELS

if TYPE_CHECKING:
    from normtheory.certify.setting import Setting

# a model met with this much more room than the tightest one says nothing about the kernel
LOOSEST_USEFUL_FIT = 16


def _worst_ratios(judged, setting, out_fmt, quantities, *, reuse_reference=True) -> dict[str, float]:
    """{quantity: max error/bound over the judged batches under `setting`} (inf: non-finite),
    for the quantities the setting has a bound for. Only a ratio ≤ 1 is ever used (a fit), so a
    quantity is not judged on later batches once it exceeds 1 on one: its value is then the
    ratio so far, above 1 — the same verdict (no fit) as the maximum over all batches."""
    worst = dict.fromkeys(quantities, 0.0)
    for batch, outputs, ref in judged:
        open_quantities = tuple(q for q in worst if worst[q] <= 1)
        if not open_quantities:
            break
        for quantity, comparison in _judge(batch, outputs, ref if reuse_reference else None, setting, out_fmt,
                                           open_quantities, worst).items():
            if comparison.nonfinite.any():
                worst[quantity] = float("inf")
            else:
                worst[quantity] = max(worst[quantity], float(np.nan_to_num(comparison.ratio, nan=0.0).max(initial=0.0)))
    return worst


def _judge(batch, outputs, ref, setting, out_fmt, quantities, worst) -> dict:
    """judge_batch of `quantities` together (one evaluation of the bounds); where that is refused
    (UsageError: no bound for one of them), each alone, and those without a bound are dropped
    from `worst`."""
    try:
        return judge_batch(batch, outputs, setting, out_fmt, ref=ref, quantities=quantities)
    except UsageError:
        if len(quantities) == 1:
            del worst[quantities[0]]
            return {}
    comparisons = {}
    for quantity in quantities:
        comparisons.update(_judge(batch, outputs, ref, setting, out_fmt, (quantity,), worst))
    return comparisons


def _model_fits(judged: list, setting: Setting, out_fmt: FloatFormat,
                quantities: list[str] | tuple[str, ...]) -> dict[str, list[tuple[str, float]]]:
    fits: dict[str, list] = {q: [] for q in quantities}
    for name, model in MODELS.items():
        if name in DEFAULT_FAMILY or model.eps_mode != setting.eps_mode:
            continue  # a model of another eps placement judges another formula
        candidate = replace(setting, contract=Contract("model", model=name))
        for quantity, ratio in _worst_ratios(judged, candidate, out_fmt, quantities).items():
            if 0 < ratio <= 1:  # 0: the model's bound is infinite or vast here, which explains nothing
                fits[quantity].append((name, ratio))
    return fits


def _eps_outside_fit(judged: list, setting: Setting, out_fmt: FloatFormat) -> float | None:
    """max error/bound of the forward against x/(root + eps), when the kernel was specified
    with eps inside; None when that reading does not apply (only whether it is ≤ 1 is used:
    above 1 it may be the ratio of the batches judged until it exceeded 1)."""
    if setting.eps_mode != "inside" or setting.eps == 0:
        return None
    outside = replace(setting, eps_mode="outside", contract=DEFAULT)
    return _worst_ratios(judged, outside, out_fmt, ("y",), reuse_reference=False).get("y")


def explain_all(judged: list, setting: Setting, out_fmt: FloatFormat,
                quantities: list[str] | tuple[str, ...]) -> dict[str, list[tuple[str, float | None]]]:
    """{quantity: [(model, max error/bound)]}, tightest fit first, for the failing quantities;
    EPS_OUTSIDE_EXPLANATION alone when the forward is the eps-outside formula (its ratio is
    None for the gradients, which no model bounds)."""
    if "y" in quantities:
        placement = _eps_outside_fit(judged, setting, out_fmt)
        if placement is not None and placement <= 1:
            # the gradients are then those of the eps-outside formula, which no model bounds
            return {q: [(EPS_OUTSIDE_EXPLANATION, placement if q == "y" else None)] for q in quantities}
    fits = _model_fits(judged, setting, out_fmt, quantities)
    # the tightest fit first: a model whose bound is barely met describes the kernel best. A
    # model met with 16x more room than the tightest one (bf16_accum's bound meets almost any
    # kernel) says nothing about this kernel: it is only shown when nothing tighter fits.
    ranked = {q: sorted(v, key=lambda item: -item[1]) for q, v in fits.items()}
    return {q: [(name, ratio) for name, ratio in v if ratio >= v[0][1] / LOOSEST_USEFUL_FIT] for q, v in ranked.items()}
