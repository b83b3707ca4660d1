"""Welford's bounds (bounds/welford.py): finite and sound for fp32 rows with |mean|/std up to 1e6,
including rows built to stall the running mean (every value a few ulps above the first, so that
(x − m̂)/j rounds away), where the old Cauchy–Schwarz analysis gave no bound at all."""

import numpy as np
import pytest

from normtheory.formats import FORMATS
from normtheory.precision.bounds.forward import forward_bound
from normtheory.precision.emulation.forward import forward
from normtheory.precision.measure import absolute_errors, exact_outputs
from normtheory.precision.models import MODELS

FP32 = FORMATS["fp32"]


def _offset_rows(ratio, d, seed):
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal((2, d)) + ratio * rng.choice([-1.0, 1.0])
    base = FP32.round_to_float64(np.full((1, 1), ratio))
    stalled = base + FP32.ulp(base) * rng.integers(0, max(2, d // 2), (1, d))  # a few ulps above
    return FP32.round_to_float64(np.concatenate([normal, stalled]))


@pytest.mark.parametrize("model_name", ["welford", "welford_sequential"])
@pytest.mark.parametrize("d", [4, 16, 64])
def test_welford_worst_case_bound_is_finite_and_holds_up_to_1e6(model_name, d):
    model = MODELS[model_name]
    for ratio in (1e4, 1e5, 1e6):
        x = _offset_rows(ratio, d, seed=d)
        y = forward("layernorm", x, model=model, eps=1e-5)
        bound = forward_bound("layernorm", x, model=model, eps=1e-5).total
        err = absolute_errors(y, exact_outputs("layernorm", x, eps=1e-5)["y"])
        assert np.isfinite(bound).all(), (ratio, d)
        assert (err <= bound).all(), (ratio, d, float(np.max(err / bound)))


def test_welford_bound_is_sharper_than_the_cauchy_schwarz_form(monkeypatch):
    """At |mean|/std = 1e4 the statistic's error bound is a few κ·u (κ = |mean|/std); the
    Cauchy–Schwarz form that bounds/welford.py still computes (the other side of a minimum) is about
    a hundred κ·u, so with the adjoint form switched off the same check fails."""
    from normtheory.precision.bounds import welford
    from normtheory.precision.toolkit.context import BoundContext

    x = _offset_rows(1e4, 64, seed=1)[:2]
    acc = FORMATS["fp32"]
    u = acc.unit_roundoff
    var = x.var(axis=1)
    kappa = np.abs(x.mean(axis=1)) / np.sqrt(var)

    def relative_error():
        return welford.welford_variance_error(x, BoundContext(MODELS["welford"]), 64).err / var

    assert (relative_error() < 20 * kappa * u).all()
    infinite = np.full(len(x), np.inf)
    monkeypatch.setattr(welford, "welford_errors", lambda x, ctx, **kw: welford.WelfordErrors(*(infinite,) * 4))
    assert not (relative_error() < 20 * kappa * u).any()
