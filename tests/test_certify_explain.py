"""explain.py stops judging a model on a quantity once it has exceeded its bound on one batch
(only fits, max error/bound ≤ 1, are reported): the explanation is the one of judging every model
on every batch, one quantity at a time, as before — with fewer bound evaluations."""

import numpy as np

from normtheory.certify import engine, explain
from normtheory.certify.api import certify_kernel, prepare
from normtheory.certify.judge import judge_batch
from normtheory.errors import UsageError


def _exhaustive_ratios(judged, setting, out_fmt, quantities, *, reuse_reference=True):
    """Every batch, each quantity alone: the evaluation before the early stop."""
    worst = {}
    for quantity in quantities:
        try:
            ratios = [explain.judge_batch(batch, outputs, setting, out_fmt, ref=ref if reuse_reference else None,
                                  quantities=(quantity,)).get(quantity) for batch, outputs, ref in judged]
        except UsageError:
            continue
        worst[quantity] = max((np.inf if c.nonfinite.any() else float(np.nan_to_num(c.ratio, nan=0.0).max(initial=0.0))
                               for c in ratios if c is not None), default=0.0)
    return worst


def _first_batch_only(judged, setting, out_fmt, quantities, *, reuse_reference=True):
    """A wrong variant: the ratio of the first batch only."""
    return _exhaustive_ratios(judged[:1], setting, out_fmt, quantities, reuse_reference=reuse_reference)


def _explanation_inputs(monkeypatch):
    captured = {}
    real = engine.explain_all

    def spy(judged, setting, out_fmt, quantities):
        captured.update(judged=judged, setting=setting, out_fmt=out_fmt, quantities=quantities)
        return real(judged, setting, out_fmt, quantities)

    monkeypatch.setattr(engine, "explain_all", spy)
    # torch's CPU layer_norm in bf16 fails `default` in its backward (a known finding): a few
    # named models fit, most do not
    config = prepare("torch.layer_norm", op="layernorm", format="bf16", d=64, budget=160, search=False)
    certify_kernel(config, op="layernorm")
    return captured


def test_the_early_stop_gives_the_exhaustive_explanation_with_fewer_evaluations(monkeypatch):
    inputs = _explanation_inputs(monkeypatch)
    assert inputs, "the certification failed nothing: no explanation to compare"
    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs.get("quantities"))
        return judge_batch(*args, **kwargs)

    monkeypatch.setattr(explain, "judge_batch", counted)
    fast = explain.explain_all(**inputs)
    fast_calls = len(calls)
    assert any(fast.values()), fast  # some models fit (judged on every batch), the others stop early
    monkeypatch.setattr(explain, "_worst_ratios", _exhaustive_ratios)
    calls.clear()
    assert explain.explain_all(**inputs) == fast
    assert fast_calls < len(calls) / 2
    monkeypatch.setattr(explain, "_worst_ratios", _first_batch_only)
    assert explain.explain_all(**inputs) != fast  # the comparison sees the ratios of later batches
