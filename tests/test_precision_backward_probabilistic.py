"""The probabilistic backward bounds (bounds/backward.py, P1–P3): the rounding steps they count
are those the model's tree performs, and on random rows the fraction of gradient elements above
them stays below what their failure probability allows."""

import numpy as np
import pytest
from precision_cases import RecordingArith

from normtheory.formats import FORMATS
from normtheory.precision.bounds.backward import FAILURE_PROBABILITY, backward_bound
from normtheory.precision.emulation.backward import backward
from normtheory.precision.emulation.reductions import tree_sum, tree_sum_products
from normtheory.precision.measure import absolute_errors, exact_outputs
from normtheory.precision.models import MODELS
from normtheory.precision.toolkit.tree import operand_sums


@pytest.mark.parametrize("model_name", ["default", "two_pass_sequential", "two_pass_pairwise"])
@pytest.mark.parametrize("n", [1, 5, 64, 100])
@pytest.mark.parametrize("fused", [False, True])
def test_rounding_steps_are_those_the_tree_rounds(model_name, n, fused):
    model = MODELS[model_name]
    x = np.random.default_rng(n).integers(-9, 10, (3, n)).astype(np.float64)
    ar = RecordingArith()
    if fused:  # a fused product rounds already at a lane's first step (0 + a·b)
        tree_sum_products(x, np.ones_like(x), ar, model.variant(fma=True))
        rounded = ar.sums
    else:
        tree_sum(x, ar, model)
        rounded = ar.sums[1:]  # 0 + x: exact
    recorded = sorted(np.concatenate([np.zeros((3, 0))] + rounded, axis=1)[0].tolist())
    counted = operand_sums(x, model, first_step_rounds=fused)[0]
    lanes = model.lane_count(n)
    if n % lanes == 0 and lanes & (lanes - 1) == 0:
        assert sorted(counted.tolist()) == recorded
    else:  # padded steps (adding 0, which rounds nothing) are counted too: a superset
        assert len(counted) >= len(recorded)
        remaining = list(counted)
        for value in recorded:
            remaining.remove(value)


CASES = [("layernorm", "weight_bias", "default"), ("layernorm", "weight_bias", "two_pass_sequential"),
         ("rmsnorm", "weight", "default"), ("rmsnorm", "weight", "llama"),
         # the models whose bounds gained the binade-measured roundings, the martingale forms of A
         # and B and (bf16) P4's row-budgeted magnitudes: inputs in the accumulator's format
         ("layernorm", "weight_bias", "two_pass_pairwise"), ("layernorm", "weight_bias", "bf16_accum"),
         ("rmsnorm", "weight", "bf16_accum"), ("layernorm", "weight_bias", "fp16_accum"),
         # the plain sum, the square root and the max floor of l2normalize
         ("l2normalize", "weight", "default"), ("l2normalize", "none", "bf16_accum")]


def _fractions_above(op, affine, model_name, scale):
    model = MODELS[model_name]
    fmt = FORMATS[model.acc]
    rng = np.random.default_rng(7)
    rows, d = 64, 64
    x = fmt.round_to_float64(rng.standard_normal((rows, d)))
    gy = fmt.round_to_float64(rng.standard_normal((rows, d)))
    w = fmt.round_to_float64(rng.standard_normal(d) * 2)
    b = fmt.round_to_float64(rng.standard_normal(d))
    exact = exact_outputs(op, x, w, b, eps=1e-5, affine=affine, gy=gy)
    computed = backward(op, x, gy, w, b, model=model, eps=1e-5, affine=affine)
    bound = backward_bound(op, x, gy, w, b, model=model, eps=1e-5, affine=affine, kind="probabilistic")
    return {q: float(np.mean(absolute_errors(computed[q], exact[q]) > scale * getattr(bound, q)))
            for q in ("gx", "gw", "gb") if q in exact}


@pytest.mark.parametrize("op,affine,model_name", CASES)
def test_fraction_above_the_probabilistic_backward_bounds(op, affine, model_name):
    """Each element exceeds its bound with probability at most FAILURE_PROBABILITY, so the expected
    fraction above is at most that, and by Markov's inequality a fraction above
    20·FAILURE_PROBABILITY happens with probability at most 5%. A tenth of the bound is exceeded
    far more often (the check can fail)."""
    level = 20 * FAILURE_PROBABILITY
    for quantity, fraction in _fractions_above(op, affine, model_name, 1.0).items():
        assert fraction <= level, f"{quantity}: {fraction:.3g} of the elements above the bound"
    for quantity, fraction in _fractions_above(op, affine, model_name, 0.1).items():
        assert fraction > level, f"{quantity}: a tenth of the bound is rarely exceeded"
