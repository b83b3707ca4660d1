"""The emulated Lp kernels (precision/emulation/lp.py): the stable one within the bound of its own
accumulator, in the worst (sequential) and the warp order; the naive one overflowing where
predicted with a truly fp16 / bf16 running sum."""

import math

import numpy as np
import pytest

from normtheory.formats import FORMATS
from normtheory.precision.bounds.lp import stable_forward_bound
from normtheory.precision.emulation.lp import SEQUENTIAL, emulate_naive, emulate_stable
from normtheory.precision.measure import absolute_errors
from normtheory.reference import evaluate
from normtheory.theory.lp.measure import binade_rows
from normtheory.theory.lp.thresholds import naive_failures, naive_overflow_abs

EPS = 1e-6


def _worst_ratio(acc, fmt, p, lanes, bound_acc, affine="none"):
    x = binade_rows(fmt, 48, 2, 6, seed=2)
    rng = np.random.default_rng(4)
    w = FORMATS[fmt].round_to_float64(rng.uniform(-2, 2, 48)) if affine != "none" else None
    b = FORMATS[fmt].round_to_float64(rng.uniform(-1, 1, 48)) if affine == "weight_bias" else None
    model = SEQUENTIAL.variant(acc=acc, lanes=lanes)
    y = emulate_stable(x, w, b, p=p, eps=EPS, affine=affine, out_format=fmt, model=model)
    exact = evaluate("lpnorm", x, w, b, eps=EPS, affine=affine, p=p, prec=96)["y"]
    bound = stable_forward_bound(x, w, b, p=p, eps=EPS, affine=affine, out_format=fmt, acc=bound_acc).total
    assert np.isfinite(bound).all()
    errors = absolute_errors(y, exact)
    return float(np.where(errors == 0, 0.0, errors / bound).max())


@pytest.mark.parametrize("acc, fmt", [("fp32", "fp32"), ("fp32", "bf16"), ("bf16", "bf16"), ("fp16", "fp16")])
@pytest.mark.parametrize("p", (1, 1.5, 3, 8, math.inf))
@pytest.mark.parametrize("lanes", (1, 32))
def test_emulated_stable_kernel_is_within_the_bound_of_its_accumulator(acc, fmt, p, lanes):
    assert _worst_ratio(acc, fmt, p, lanes, acc) <= 1.0


def test_emulated_stable_kernel_with_weight_and_bias_is_within_its_bound():
    assert _worst_ratio("bf16", "bf16", 3, 1, "bf16", affine="weight_bias") <= 1.0


@pytest.mark.parametrize("acc", ("bf16", "fp16"))
def test_a_low_precision_accumulator_breaks_the_fp32_bound(acc):
    """The same comparison with the wrong (fp32) accumulator's bound must fail."""
    assert _worst_ratio(acc, acc, 1.5, 1, "fp32") > 1.0


@pytest.mark.parametrize("acc", ("fp16", "bf16"))
@pytest.mark.parametrize("p", (2, 3, 4, 8))
@pytest.mark.parametrize("d", (64, 1024))
def test_emulated_naive_kernel_with_a_low_precision_running_sum_overflows_where_predicted(acc, p, d):
    fmt = FORMATS[acc]
    predicted = naive_overflow_abs(p, d, acc)
    values = fmt.to_float64(fmt.all_values())
    # every value of the format within two binades of the prediction, and 1.0 (must pass)
    window = np.isfinite(values) & (values >= predicted / 4) & (values <= predicted * 4)
    values = np.unique(np.concatenate([[1.0], values[window]]))
    rows = np.repeat(values[:, None], d, axis=1)
    model = SEQUENTIAL.variant(acc=acc)
    failed = naive_failures(emulate_naive(rows, p=p, eps=EPS, out_format=acc, model=model), rows)
    assert failed.any() and (~failed[: np.argmax(failed)]).all()  # a threshold, not scattered failures
    measured = values[np.argmax(failed)]
    assert predicted / 2 <= measured <= predicted * 2  # one binade
    # and not the stable kernel
    assert not naive_failures(emulate_stable(rows, p=p, eps=EPS, out_format=acc, model=model), rows).any()
