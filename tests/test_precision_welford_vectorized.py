"""The Welford adjoint bound (bounds/welford.py) evaluated block by block gives the same bits as
the step-by-step evaluation it replaced (tests/welford_stepwise.py, the former code): every
model layout (32 lanes, one lane, one lane per entry, a shorter last step), with and without
FMA, under FTZ, in bf16, both kinds, constant and offset rows, and any grouping of rows and
steps. A wrong variant — the same charges added in another order — is caught by the same
comparison, so it sees the last bit."""

import numpy as np
import pytest
import welford_stepwise

from normtheory.formats import FORMATS
from normtheory.precision.bounds import welford
from normtheory.precision.models import MODELS
from normtheory.precision.toolkit.context import BoundContext

VARIANTS = [("welford", {}), ("welford_sequential", {}), ("welford", {"fma": False}), ("welford", {"ftz": True}),
            ("welford", {"lanes": None}), ("welford", {"lanes": 5}), ("welford_sequential", {"acc": "bf16"})]


def _rows(n, seed):
    """Normal rows at three offsets (|mean|/std up to 1e6), a constant row, a row with a zero run."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((5, n)) * rng.uniform(0.1, 10, (5, 1)) + np.array([[0.0], [1e3], [1e6], [7.0], [0.0]])
    x[3] = x[3, 0]
    x[4, : n // 2] = 0.0
    return FORMATS["bf16"].round_to_float64(x)


def _margins(x, ctx):
    u = ctx.u
    x_range = x.max(axis=1) - x.min(axis=1) + 4 * u * np.abs(x).max(axis=1)
    return dict(x_range=x_range, x_scale=np.abs(x).max(axis=1) * (1 + 2 * u) / (1 - u))


def _same_bits(a, b):
    return all(np.asarray(p).tobytes() == np.asarray(q).tobytes() for p, q in zip(a, b, strict=True))


@pytest.mark.parametrize("name,changes", VARIANTS)
@pytest.mark.parametrize("kind", ["worst", "probabilistic"])
def test_block_evaluation_gives_the_step_by_step_bits(name, changes, kind):
    ctx = BoundContext(MODELS[name].variant(**changes), kind)
    for n in (1, 2, 31, 32, 33, 48, 100):
        x = _rows(n, seed=n)
        margins = _margins(x, ctx)
        expected = welford_stepwise.stepwise_welford_errors(x, ctx, **margins)
        assert np.isfinite(expected.m2_worst).all()  # a comparison of finite bounds, not of NaNs
        assert _same_bits(welford.welford_errors(x, ctx, **margins), expected), (name, changes, kind, n)


def test_grouping_rows_and_steps_changes_no_bit(monkeypatch):
    ctx = BoundContext(MODELS["welford"])
    x = _rows(200, seed=3)
    margins = _margins(x, ctx)
    whole = welford.welford_errors(x, ctx, **margins)
    monkeypatch.setattr(welford, "ROW_CHUNK_ELEMENTS", 2 * 200)  # two rows per group
    monkeypatch.setattr(welford, "CHARGE_CHUNK_ELEMENTS", 3 * 2 * 32)  # three steps' charges at a time
    assert _same_bits(welford.welford_errors(x, ctx, **margins), whole)


def test_a_reordered_sum_is_caught(monkeypatch):
    """The comparison is bitwise: the step-by-step sweep with e1 and e2 of every lane step added
    the other way round differs from the block evaluation on some row (by an ulp or so: the
    bound is no looser, but the claim is the same bits, and that is what this would break)."""
    ctx = BoundContext(MODELS["welford"])
    monkeypatch.setattr(welford_stepwise, "LANE_CHARGE_ORDER", (1, 0, 2, 3, 4))
    differing = 0
    for n in (48, 100, 256):
        x = _rows(n, seed=n)
        margins = _margins(x, ctx)
        reordered = welford_stepwise.stepwise_welford_errors(x, ctx, **margins)
        differing += not _same_bits(welford.welford_errors(x, ctx, **margins), reordered)
    assert differing > 0
