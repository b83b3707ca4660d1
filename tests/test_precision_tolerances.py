"""`precision.tolerances`: several quantities of the same rows from one evaluation, each exactly
what `tolerance(..., quantity=q)` gives; the forward statistics (Welford's adjoint sweep, the
costly part) are evaluated once per model, not once per quantity."""

import numpy as np
import pytest

from normtheory.formats import FORMATS
from normtheory.precision import QUANTITIES, tolerance, tolerances
from normtheory.precision.bounds import statistic_rules
from normtheory.precision.bounds.normalized import normalized_error, shared_or_evaluated
from normtheory.precision.models import MODELS
from normtheory.precision.toolkit.context import BoundContext
from normtheory.registry import get_spec


def _problem(fmt_name, seed=0, rows=6, n=40):
    fmt = FORMATS[fmt_name]
    rng = np.random.default_rng(seed)
    x = fmt.round_to_float64(rng.standard_normal((rows, n)) + rng.choice([0.0, 30.0], (rows, 1)))
    w = fmt.round_to_float64(1 + 0.25 * rng.standard_normal(n))
    b = fmt.round_to_float64(0.5 * rng.standard_normal(n))
    gy = fmt.round_to_float64(rng.standard_normal(x.shape))
    return x, w, b, gy


@pytest.mark.parametrize("op", ["layernorm", "rmsnorm", "crmsnorm"])
@pytest.mark.parametrize("contract", ["default", "model:welford_sequential", "model:llama", "model:ftz", "ulp:2"])
@pytest.mark.parametrize("kind", ["worst", "probabilistic"])
def test_every_quantity_is_the_single_quantity_bound_bit_for_bit(op, contract, kind):
    x, w, b, gy = _problem("bf16")
    affine, bias = ("weight_bias", b) if op == "layernorm" else ("weight", None)
    quantities = QUANTITIES if bias is not None else ("y", "gx", "gw")
    exact = {"y": np.abs(x), "gx": np.abs(x), "gw": np.abs(x[0]), "gb": np.abs(x[0])}
    common = dict(format="bf16", eps=1e-5, affine=affine, contract=contract, kind=kind, gy=gy, w_format="fp32")
    together = tolerances(op, x, w, bias, **common, quantities=quantities, exact=exact)
    assert set(together) == set(quantities)
    for quantity in quantities:
        alone = tolerance(op, x, w, bias, **common, quantity=quantity, exact=exact[quantity])
        assert together[quantity].shape == alone.shape
        assert together[quantity].tobytes() == alone.tobytes(), (op, contract, kind, quantity)


def test_the_statistics_are_evaluated_once_per_model(monkeypatch):
    """default = two_pass + welford, each with and without FMA: one Welford evaluation per Welford
    model (fused and unfused) for y, gx, gw and gb together; the same four quantities asked one at
    a time evaluate each four times (what the test would see if the sharing were lost)."""
    calls = []
    welford = statistic_rules.VARIANCE_ALGORITHMS["welford"]

    def counted(x, ctx, d):
        calls.append(ctx.model.name)
        return welford(x, ctx, d)

    monkeypatch.setitem(statistic_rules.VARIANCE_ALGORITHMS, "welford", counted)
    x, w, b, gy = _problem("fp32", seed=1)
    common = dict(format="fp32", eps=1e-5, affine="weight_bias", gy=gy)
    tolerances("layernorm", x, w, b, **common)
    once = ["welford", "welford_unfused"]
    assert calls == once
    for quantity in QUANTITIES:
        tolerance("layernorm", x, w, b, **common, quantity=quantity)
    assert calls == once * 5


def test_a_shared_evaluation_of_another_model_or_shape_is_refused():
    spec = get_spec("layernorm")
    x, *_ = _problem("fp32", seed=2)
    ctx = BoundContext(MODELS["welford"])
    norm = normalized_error(spec, x, ctx, eps=1e-5)
    assert shared_or_evaluated(spec, x, ctx, eps=1e-5, shared=norm) is norm
    with pytest.raises(ValueError):
        shared_or_evaluated(spec, x, BoundContext(MODELS["default"]), eps=1e-5, shared=norm)
    with pytest.raises(ValueError):
        shared_or_evaluated(spec, x, ctx.with_kind("probabilistic"), eps=1e-5, shared=norm)
    with pytest.raises(ValueError):
        shared_or_evaluated(spec, x, ctx, eps=1e-6, shared=norm)
    with pytest.raises(ValueError):
        shared_or_evaluated(spec, x[:3], ctx, eps=1e-5, shared=norm)
