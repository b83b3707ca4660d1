"""Torch tensors as reference inputs, and the device-side float64 pass (normtheory.accel).

Without a GPU the device pass runs on CPU tensors — the same torch code a CUDA tensor takes —
and must give bit for bit what the numpy path gives; a weakened bound must not. The `gpu`
tests run the real CUDA path (skipped without CUDA)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from normtheory.accel.reference_device import evaluate_on_device  # noqa: E402
from normtheory.errors import UsageError  # noqa: E402
from normtheory.families import draw_rows  # noqa: E402
from normtheory.formats import FORMATS  # noqa: E402
from normtheory.reference import correctly_rounded, tensors  # noqa: E402

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _case(op, name, family, seed, rows=16, n=96):
    fmt = FORMATS[name]
    rng = np.random.default_rng(seed)
    x = draw_rows(family, rng, rows, n, fmt)
    w = fmt.round_to_float64(rng.standard_normal(n))
    b = fmt.round_to_float64(rng.standard_normal(n))
    return fmt, x, w, b


def _same(fmt, a, b):
    a, b = fmt.to_float64(a), fmt.to_float64(b)
    return np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("op", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("name", ["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("family", ["normal", "offset_1e4", "tiny", "near_constant", "constant", "outlier"])
def test_device_pass_on_cpu_tensors_equals_the_numpy_path(op, name, family):
    fmt, x, w, b = _case(op, name, family, seed=zlib.crc32(f"{op}{name}{family}".encode()))
    for affine, eps_mode in (("weight_bias", "inside"), ("offset_weight", "outside"), ("none", "inside")):
        kwargs = dict(format=name, eps=1e-6, eps_mode=eps_mode, affine=affine)
        expected = correctly_rounded(op, x, w, b, **kwargs)["y"]
        xt = torch.tensor(x).to(TORCH_DTYPES[name])
        got, stats = evaluate_on_device(op, xt, torch.tensor(w), b, **kwargs)
        assert _same(fmt, got["y"], expected), (affine, eps_mode)
        if family == "normal" and affine == "weight_bias":
            assert stats["host_rows"] == 0  # the device pass decided every element itself


def test_device_pass_marks_nan_rows_and_bad_columns():
    fmt, x, w, b = _case("layernorm", "bf16", "normal", seed=3, rows=4, n=16)
    x[1, 2] = np.nan
    x[2] = 5.0  # a constant row with eps = 0: 0/0
    w[4] = np.inf
    kwargs = dict(format="bf16", eps=0.0, affine="weight_bias")
    got, _ = evaluate_on_device("layernorm", torch.tensor(x), w, b, **kwargs)
    assert _same(fmt, got["y"], correctly_rounded("layernorm", x, w, b, **kwargs)["y"])
    y = fmt.to_float64(got["y"])
    assert np.isnan(y[1]).all() and np.isnan(y[2]).all() and np.isnan(y[:, 4]).all()


@pytest.mark.parametrize("name", ["fp32", "bf16", "fp16", "fp8_e4m3fn"])
def test_device_rounding_test_is_sound_and_a_weakened_one_is_not(name):
    """The device's cell test against exact rational interval ends (test_reference_rowpass's
    checker): sound as written; with the bound halved it decides intervals that round two ways.
    (A weakened per-element bound is not caught this way: ŷ is far more accurate than its
    bound, so random inputs almost never land where that matters.)"""
    from test_reference_rowpass import _cell_cases, _violations

    from normtheory.accel.reference_device import cell_test

    fmt = FORMATS[name]
    values, errors = _cell_cases(fmt, np.random.default_rng(2))
    a, e = torch.tensor(np.abs(values)), torch.tensor(errors)
    q, inside = cell_test(a, e, fmt)
    assert inside.sum() > values.size // 4
    assert _violations(values, errors, q.numpy(), inside.numpy(), fmt) == 0
    q, inside = cell_test(a, e, fmt, scale=0.5)
    assert _violations(values, errors, q.numpy(), inside.numpy(), fmt) > 0


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64"])
def test_correctly_rounded_accepts_torch_tensors(dtype):
    fmt, x, w, b = _case("rmsnorm", "bf16", "normal", seed=1, rows=3, n=32)
    tensor = torch.tensor(x).to(getattr(torch, dtype)).requires_grad_(True)
    expected = correctly_rounded("rmsnorm", x, w, b, format="bf16", affine="weight_bias")
    got = correctly_rounded("rmsnorm", tensor, torch.tensor(w).to(torch.bfloat16), torch.tensor(b),
                            format="bf16", affine="weight_bias", gy=torch.ones_like(tensor))
    assert _same(fmt, got["y"], expected["y"])
    assert set(got) == {"y", "gx", "gw", "gb"}
    one = correctly_rounded("rmsnorm", tensor[0], format="bf16")  # a single row stays one-dimensional
    assert one["y"].shape == (32,)


def test_non_real_tensors_are_refused():
    with pytest.raises(UsageError, match="not a real numeric tensor"):
        correctly_rounded("rmsnorm", torch.ones(2, 4, dtype=torch.bool), format="bf16")
    with pytest.raises(UsageError, match="not representable in bf16"):
        correctly_rounded("rmsnorm", torch.tensor([[0.1, 1.0]], dtype=torch.float64), format="bf16")


def test_cuda_tensors_are_routed_to_the_device_pass_only_when_registered():
    cpu = torch.ones(2, 4)
    assert tensors.device_evaluation("rmsnorm", cpu, None, None, None) is None  # CPU tensors: the numba path

    class FakeCuda:  # duck-typed stand-in: tensors.py recognises tensors by module and methods
        __module__ = "torch"
        device = type("D", (), {"type": "cuda"})()

        def detach(self):
            return self

    FakeCuda.__module__ = "torch"
    assert tensors.device_evaluation("rmsnorm", FakeCuda(), None, None, None) is evaluate_on_device
    assert tensors.device_evaluation("rmsnorm", FakeCuda(), None, None, gy=np.ones(1)) is None  # backward: host


@pytest.mark.gpu
@pytest.mark.parametrize("op", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("name", ["bf16", "fp16", "fp32"])
def test_cuda_tensors_give_the_host_result(op, name):
    fmt, x, w, b = _case(op, name, "normal", seed=4, rows=256, n=1024)
    for family in ("normal", "tiny", "offset_1e4"):
        _, x, _, _ = _case(op, name, family, seed=5, rows=128, n=1024)
        xt = torch.tensor(x).to(TORCH_DTYPES[name]).cuda()
        kwargs = dict(format=name, eps=1e-6, affine="weight_bias")
        got, stats = correctly_rounded(op, xt, torch.tensor(w).cuda(), b, return_stats=True, **kwargs)
        assert "host_rows" in stats  # it took the device pass
        assert _same(fmt, got["y"], correctly_rounded(op, x, w, b, **kwargs)["y"]), family
