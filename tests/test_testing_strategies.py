"""normtheory.strategies: arrays exact in their format, the families they promise (offsets,
outliers), and a user's own @given test with the comparator that finds a one-pass variance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from normtheory import strategies as nst
from normtheory.formats import FORMATS

torch = pytest.importorskip("torch")

from normtheory.kernels import defective  # noqa: E402
from normtheory.testing import assert_close_to_exact  # noqa: E402

FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TORCH = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@FEW
@given(data=st.data())
def test_rows_and_weights_are_exact_in_their_format(data):
    fmt = data.draw(nst.formats())
    x = data.draw(nst.rows(n=st.integers(1, 64), format=fmt, offset=st.floats(0, 1e4), outliers=st.integers(0, 2)))
    w = data.draw(nst.weights(n=x.shape[1], format=fmt))
    assert x.ndim == 2 and 1 <= x.shape[0] <= 8 and w.shape == (x.shape[1],)
    assert FORMATS[fmt].is_representable(x).all() and FORMATS[fmt].is_representable(w).all()
    assert np.isfinite(x).all() and np.isfinite(w).all()


@FEW
@given(x=nst.rows(n=256, format="fp32", family="offset_1e4"))
def test_offset_family_has_large_mean_over_std(x):
    ratio = np.abs(x.mean(axis=1)) / x.std(axis=1)
    assert (ratio > 1e3).all()


@FEW
@given(x=nst.rows(n=512, format="bf16", family="normal", outliers=st.just(2)))
def test_outliers_are_massive(x):
    assert (np.abs(x).max(axis=1) > 50 * np.median(np.abs(x), axis=1)).all()


def test_same_example_same_arrays():
    strategy = nst.rows(n=32, format="bf16", family="heavy_tail", count=3)
    first = find(strategy, lambda a: a[0, 0] > 0.5, settings=settings(database=None, derandomize=True))
    again = find(strategy, lambda a: a[0, 0] > 0.5, settings=settings(database=None, derandomize=True))
    np.testing.assert_array_equal(first, again)


@FEW
@given(inputs=nst.norm_inputs(op="layernorm", n=128, format=nst.formats()))
def test_a_users_given_test_careful_layer_norm_passes(inputs):
    dtype = TORCH[inputs["format"]]
    x, w, b = (torch.tensor(inputs[k]).to(dtype) for k in ("x", "weight", "bias"))
    assert_close_to_exact(defective.careful_layer_norm(x, w, b, 1e-5), op="layernorm", x=x, weight=w, bias=b, eps=1e-5)


def test_the_strategies_find_what_one_pass_variance_gets_wrong():
    def one_pass_fails(x):
        xt = torch.tensor(x).float()
        try:
            assert_close_to_exact(defective.one_pass_layer_norm(xt, None, None, 1e-5), op="layernorm", x=xt, eps=1e-5)
        except AssertionError:
            return True
        return False

    strategy = nst.rows(n=64, format="fp32", family=nst.families(["normal", "offset_1e2", "offset_1e4"]))
    found = find(strategy, one_pass_fails, settings=settings(database=None, derandomize=True, max_examples=50))
    assert (np.abs(found.mean(axis=1)) > 10 * found.std(axis=1)).any()
