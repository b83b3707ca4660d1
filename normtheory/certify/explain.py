"""Explaining a failure: which named algorithm model's bound the kernel does meet.

A kernel that fails `default` is often a known, deliberate algorithm (HF's llama cast
placement, one-pass statistics, accumulation in the input's precision). Re-judging the same
outputs under each model's bound (the reference is reused: it does not depend on the contract)
turns "fails" into "fails `default`; consistent with model:llama (max error/bound 0.92)" — per
quantity, since a kernel's forward and backward may be different algorithms.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from normtheory.certify.judge import judge_batch
from normtheory.errors import UsageError
from normtheory.precision.models import DEFAULT_FAMILY, MODELS


def explain_all(judged, setting, out_fmt, quantities) -> dict[str, list[tuple[str, float]]]:
    """{quantity: [(model, max error/bound)]}, tightest fit first, for the failing quantities."""
    explained: dict[str, list] = {q: [] for q in quantities}
    for name in MODELS:
        if name in DEFAULT_FAMILY:
            continue
        candidate = replace(setting, contract=f"model:{name}")
        worst = {q: 0.0 for q in quantities}
        try:
            for batch, outputs, ref in judged:
                for quantity, comparison in judge_batch(batch, outputs, candidate, out_fmt, ref=ref).items():
                    if quantity not in worst:
                        continue
                    ratio = np.nan_to_num(comparison.ratio, nan=0.0)
                    bad = comparison.nonfinite.any()
                    worst[quantity] = float("inf") if bad else max(worst[quantity], float(ratio.max(initial=0.0)))
        except UsageError:  # a model without a bound for this quantity (e.g. gradients, eps outside)
            continue
        for quantity, ratio in worst.items():
            if 0 < ratio <= 1:  # 0: the model's bound is infinite or vast here, which explains nothing
                explained[quantity].append((name, ratio))
    # the tightest fit first: a model whose bound is barely met describes the kernel best. A
    # model met with 16x more room than the tightest one (bf16_accum's bound meets almost any
    # kernel) says nothing about this kernel: it is only shown when nothing tighter fits.
    ranked = {q: sorted(v, key=lambda item: -item[1]) for q, v in explained.items()}
    return {q: [(name, ratio) for name, ratio in v if ratio >= v[0][1] / 16] for q, v in ranked.items()}
