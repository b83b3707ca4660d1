"""Explaining a forward failure: which named algorithm model's bound the kernel does meet.

A kernel that fails `default` is often a known, deliberate algorithm (HF's llama cast
placement, one-pass statistics, fp16 accumulation). Re-judging the same outputs under each
model's bound (the reference is reused: it does not depend on the contract) turns "fails" into
"fails `default`; consistent with model:llama (max error/bound 0.92)".
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from normtheory.certify.judge import judge_batch
from normtheory.precision.models import DEFAULT_FAMILY, MODELS


def consistent_models(judged, setting, out_fmt) -> list[tuple[str, float]]:
    """[(model name, max forward error/bound)] for every model whose bound all judged batches
    meet, tightest fit first."""
    explained = []
    for name in MODELS:
        if name in DEFAULT_FAMILY:
            continue
        candidate = replace(setting, contract=f"model:{name}")
        worst = 0.0
        for batch, outputs, ref in judged:
            comparison = judge_batch(batch, {"y": outputs["y"]}, candidate, out_fmt, ref=ref)["y"]
            ratio = np.nan_to_num(comparison.ratio, nan=0.0)
            worst = max(worst, float(ratio.max()) if ratio.size else 0.0)
            if worst > 1 or comparison.nonfinite.any():
                worst = float("inf")
                break
        if 0 < worst <= 1:  # 0: the model's bound is infinite or vast here, which explains nothing
            explained.append((name, worst))
    # the tightest fit first: a model whose bound is barely met describes the kernel best
    return sorted(explained, key=lambda item: -item[1])
