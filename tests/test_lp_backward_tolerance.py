"""Lp gradients through `precision.tolerance(s)` and the certifier: the `default` contract of
lpnorm's gx, gw, gb is stable_backward_bound (precision/bounds/lp.py) with the same format
mapping as the other ops' gradient bounds (gx in x's format, gw and gb in the weight's); the
stable catalog kernel, whose explicit backward is the algorithm that bound covers, passes a
certification with backward, and kernels with a defective backward fail it on gx."""

import math

import numpy as np
import pytest

from normtheory.errors import UsageError
from normtheory.formats import FORMATS
from normtheory.precision import tolerance, tolerances
from normtheory.precision.bounds.lp import stable_backward_bound, stable_forward_bound
from normtheory.precision.emulation.lp import SEQUENTIAL, emulate_stable_backward

P_VALUES = (1, 1.5, 2, 3, math.inf)


def _problem(seed=0, rows=5, n=24):
    fmt = FORMATS["bf16"]
    rng = np.random.default_rng(seed)
    x = fmt.round_to_float64(rng.standard_normal((rows, n)) * rng.choice([1e-3, 1.0, 1e3], (rows, 1)))
    w = fmt.round_to_float64(1 + 0.25 * rng.standard_normal(n))
    b = fmt.round_to_float64(0.5 * rng.standard_normal(n))
    gy = fmt.round_to_float64(rng.standard_normal(x.shape))
    return x, w, b, gy


@pytest.mark.parametrize("p", P_VALUES)
def test_lp_gradient_tolerances_are_the_stable_backward_bound(p):
    x, w, b, gy = _problem()
    common = dict(format="bf16", eps=1e-6, affine="weight_bias", gy=gy, w_format="fp32", p=p)
    together = tolerances("lpnorm", x, w, b, **common)
    # gx rounded to x's format, gw and gb to the weight's; g − φ·K_b with or without FMA (fma=False covers both)
    expected = stable_backward_bound(x, gy, w, p=p, eps=1e-6, affine="weight_bias", grad_format="bf16",
                                     w_format="fp32", fma=False)
    expected["y"] = stable_forward_bound(x, w, b, p=p, eps=1e-6, affine="weight_bias", out_format="bf16").total
    for quantity in ("y", "gx", "gw", "gb"):
        alone = tolerance("lpnorm", x, w, b, **common, quantity=quantity)
        assert np.isfinite(alone).all() and (alone > 0).all(), quantity
        np.testing.assert_array_equal(alone, expected[quantity])
        np.testing.assert_array_equal(together[quantity], expected[quantity])


def test_lp_gradients_take_ulp_contracts_and_refuse_models():
    x, w, b, gy = _problem()
    exact = {"gx": np.abs(x), "gw": np.abs(x[0]), "gb": np.abs(x[0])}
    common = dict(format="bf16", eps=1e-6, affine="weight_bias", gy=gy, p=3)
    ulps = tolerances("lpnorm", x, w, b, **common, contract="ulp:2", quantities=tuple(exact), exact=exact)
    for quantity, value in exact.items():
        np.testing.assert_array_equal(ulps[quantity], 2 * FORMATS["bf16"].ulp(value))
    with pytest.raises(UsageError, match="default and ulp:K"):
        tolerance("lpnorm", x, w, b, **common, contract="model:welford", quantity="gx")
    with pytest.raises(UsageError, match="needs the incoming gradient"):
        tolerance("lpnorm", x, w, b, format="bf16", eps=1e-6, p=3, quantity="gx")


def test_lp_column_sums_without_their_affine_mode_have_no_bound():
    x, w, b, gy = _problem()
    bounds = tolerances("lpnorm", x, format="bf16", eps=1e-6, gy=gy, p=3)
    assert np.isfinite(bounds["gx"]).all()
    assert np.isinf(bounds["gw"]).all() and np.isinf(bounds["gb"]).all()


# ---- the certifier ---------------------------------------------------------------------------

torch = pytest.importorskip("torch")

from normtheory.certify.api import certify_kernel, prepare  # noqa: E402
from normtheory.kernels import defective  # noqa: E402
from normtheory.kernels.lp import lp_norm_stable  # noqa: E402


def _certify(kernel, *, format, p=3, affine="weight_bias"):
    config = prepare(kernel, op="lpnorm", p=p, format=format, d=32, budget=96, search=False, affine=affine)
    cert, _ = certify_kernel(config)
    return cert


@pytest.mark.parametrize("format,p", [("fp32", 3), ("bf16", 1.5), ("fp16", math.inf)])
def test_stable_lp_kernel_passes_with_its_backward_certified(format, p):
    cert = _certify("lp.stable", format=format, p=p)
    assert cert["verdict"] == "pass", cert["findings"]
    assert set(cert["backward"]) == {"gx", "gw", "gb"}
    assert all(0 < cert["backward"][q]["max_err_over_bound"] <= 1 for q in ("gx", "gw", "gb"))
    assert not any("backward not certified" in finding for finding in cert["findings"])


@pytest.mark.parametrize("kernel", [defective.lp_norm_without_projection, defective.lp_norm_bf16_projection])
def test_defective_lp_backward_fails_on_gx_while_forward_passes(kernel):
    cert = _certify(kernel, format="fp32")
    assert cert["verdict"] == "fail"
    assert cert["forward"]["max_err_over_bound"] <= 1
    assert cert["backward"]["gx"]["max_err_over_bound"] > 1
    assert cert["backward"]["gw"]["max_err_over_bound"] <= 1
    assert any("backward gx fails `default`" in finding for finding in cert["findings"])


@pytest.mark.parametrize("p", [1, math.inf])
def test_stable_kernel_backward_is_the_modelled_algorithm_bit_for_bit(p):
    """The catalog kernel's backward is the algorithm stable_backward_bound covers
    (emulation/lp.emulate_stable_backward with the product rounded first), not autograd through
    the forward: bit for bit on rows of two entries, where the sums have one order, and for the p
    that need no pow (p = 1: the root is t itself; p = inf: none), where the emulation's pow
    (correctly rounded) and torch's (within the ulps the bound assumes; its fp32 sqrt on CPU is
    not always correctly rounded) could differ; batches of two rows, so that gw and gb are one
    addition too."""
    rng = np.random.default_rng(5)
    fmt = FORMATS["fp32"]
    model = SEQUENTIAL.variant(fma=False)
    for _ in range(24):
        x = fmt.round_to_float64(rng.standard_normal((2, 2)) * rng.choice([1e-3, 1.0, 1e3], (2, 1)))
        gy = fmt.round_to_float64(rng.standard_normal(x.shape))
        w = fmt.round_to_float64(1 + 0.25 * rng.standard_normal(2))
        leaves = [torch.tensor(v, dtype=torch.float32, requires_grad=True) for v in (x, w, w)]
        y = lp_norm_stable(*leaves, 1e-6, p)
        computed = torch.autograd.grad(y, leaves, torch.tensor(gy, dtype=torch.float32))
        emulated = emulate_stable_backward(x, gy, w, p=p, eps=1e-6, affine="weight_bias", model=model)
        for quantity, value in zip(("gx", "gw", "gb"), computed):
            np.testing.assert_array_equal(value.double().numpy(), emulated[quantity], err_msg=quantity)
