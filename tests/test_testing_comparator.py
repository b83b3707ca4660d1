"""`assert_close_to_exact`: careful kernels pass, each kind of defect fails with a message that
says where, and what a caller gets wrong is a UsageError."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from normtheory.errors import UsageError  # noqa: E402
from normtheory.formats import FORMATS  # noqa: E402
from normtheory.kernels import defective  # noqa: E402
from normtheory.kernels.eager import llama_rms_norm  # noqa: E402
from normtheory.kernels.fp8_output import rms_norm_fp8  # noqa: E402
from normtheory.testing import assert_close_to_exact  # noqa: E402
from normtheory.testing.replay import main as replay_main  # noqa: E402

pytest_plugins = ("pytester",)
EPS = 1e-6


def _inputs(shape=(16, 256), dtype=torch.bfloat16, seed=0, bias=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=gen).to(dtype)
    w = (1 + 0.2 * torch.randn(shape[-1], generator=gen)).to(dtype)
    b = torch.randn(shape[-1], generator=gen).to(dtype) if bias else None
    gy = torch.randn(*shape, generator=gen).to(dtype)
    return x, w, b, gy


def _run(kernel, x, w, b, gy):
    """The kernel's y and its gradients, as a suite gets them from autograd."""
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    br = None if b is None else b.clone().requires_grad_()
    y = kernel(xr, wr, br, EPS)
    y.backward(gy)
    out = {"y": y.detach(), "gx": xr.grad, "gw": wr.grad}
    if br is not None:
        out["gb"] = br.grad
    return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("op, kernel", [("rmsnorm", defective.careful_rms_norm),
                                        ("layernorm", defective.careful_layer_norm)])
def test_careful_kernels_pass_forward_and_backward(op, kernel, dtype):
    x, w, b, gy = _inputs(dtype=dtype, bias=op == "layernorm")
    verdict = assert_close_to_exact(_run(kernel, x, w, b, gy), op=op, x=x, weight=w, bias=b, gy=gy, eps=EPS)
    assert set(verdict.results) == ({"y", "gx", "gw", "gb"} if op == "layernorm" else {"y", "gx", "gw"})
    assert 0 < verdict.max_ratio <= 1


def test_one_element_three_ulps_off_is_found_at_its_index_in_the_callers_shape():
    x, w, _, _ = _inputs(shape=(2, 3, 64))
    y = defective.careful_rms_norm(x, w, None, EPS)
    bad = y.clone()
    value = bad[1, 2, 5].float()
    bad[1, 2, 5] = (value + 3 * float(FORMATS["bf16"].ulp(value.item()))).bfloat16()
    assert_close_to_exact(y, op="rmsnorm", x=x, weight=w, eps=EPS)
    with pytest.raises(AssertionError) as info:
        assert_close_to_exact(bad, op="rmsnorm", x=x, weight=w, eps=EPS, msg="my kernel, seed 0")
    message = str(info.value)
    assert message.startswith("my kernel, seed 0")
    assert "mismatched elements: 1 / 384" in message
    assert "worst at index (1, 2, 5)" in message and f"got {bad[1, 2, 5].item():.9g}" in message
    assert "rows with violations (1): 5" in message
    assert "Replay:" in message


def test_numpy_arrays_in_ml_dtypes_are_judged_like_tensors():
    x, w, _, _ = _inputs()
    y = llama_rms_norm(x, w, None, EPS)
    as_numpy = {name: t.float().numpy().astype(FORMATS["bf16"].dtype) for name, t in (("x", x), ("w", w), ("y", y))}
    with pytest.raises(AssertionError) as from_torch:
        assert_close_to_exact(y, op="rmsnorm", x=x, weight=w, eps=EPS)
    with pytest.raises(AssertionError) as from_numpy:
        assert_close_to_exact(as_numpy["y"], op="rmsnorm", x=as_numpy["x"], weight=as_numpy["w"], eps=EPS)
    assert str(from_torch.value) == str(from_numpy.value)


def test_defects_fail_in_the_output_they_break():
    x, w, _, gy = _inputs()
    wrong_backward = _run(defective.wrong_backward_rms_norm, x, w, None, gy)
    with pytest.raises(AssertionError) as info:
        assert_close_to_exact(wrong_backward, op="rmsnorm", x=x, weight=w, gy=gy, eps=EPS)
    message = str(info.value)
    assert "gx (gradient of x), bf16: mismatched elements" in message
    assert "Within the bound: y" in message  # the forward of that kernel is right
    truncating = defective.truncating_rms_norm(x, w, None, EPS)
    with pytest.raises(AssertionError, match="y, bf16: mismatched elements"):
        assert_close_to_exact(truncating, op="rmsnorm", x=x, weight=w, eps=EPS)


def test_cast_before_weight_is_its_own_semantics():
    """HF Llama's placement fails the exact normalizer's bound but is exactly its own
    semantics; a kernel that multiplies in fp32 first passes the first and fails the second."""
    x, w, _, _ = _inputs(shape=(32, 512))
    hf_order = llama_rms_norm(x, w, None, EPS)
    fp32_order = defective.careful_rms_norm(x, w, None, EPS)
    with pytest.raises(AssertionError):
        assert_close_to_exact(hf_order, op="rmsnorm", x=x, weight=w, eps=EPS)
    assert assert_close_to_exact(hf_order, op="rmsnorm", x=x, weight=w, eps=EPS, semantics="llama").max_ratio <= 1
    assert_close_to_exact(fp32_order, op="rmsnorm", x=x, weight=w, eps=EPS)
    with pytest.raises(AssertionError, match="cast-before-weight semantics"):
        assert_close_to_exact(fp32_order, op="rmsnorm", x=x, weight=w, eps=EPS, semantics="llama")


def _fused(x, residual, w, round_h: bool):
    h32 = x.float() + residual.float()
    h = h32.to(x.dtype)
    normalized_input = h.float() if round_h else h32
    y = normalized_input * torch.rsqrt(normalized_input.pow(2).mean(-1, keepdim=True) + EPS) * w.float()
    return y.to(x.dtype), h


def test_fused_add_normalizes_the_rounded_sum_and_returns_it_exactly():
    x, w, _, _ = _inputs(shape=(64, 1024))
    residual, _, _, _ = _inputs(shape=(64, 1024), seed=1)
    y, h = _fused(x, residual, w, round_h=True)
    assert_close_to_exact({"y": y, "h": h}, op="add_rmsnorm", x=x, residual=residual, weight=w, eps=EPS)
    y_unrounded, _ = _fused(x, residual, w, round_h=False)
    with pytest.raises(AssertionError, match="y, bf16: mismatched"):
        assert_close_to_exact({"y": y_unrounded, "h": h}, op="rmsnorm", x=x, residual=residual, weight=w, eps=EPS)
    wrong_h = h.clone()
    flat = wrong_h.view(-1)
    flat[7] = flat[7].float() + float(FORMATS["bf16"].ulp(flat[7].item()))  # one ulp off, exactly representable
    with pytest.raises(AssertionError, match=r"h \(the fused x \+ residual\), bf16: mismatched elements: 1 /"):
        assert_close_to_exact({"y": y, "h": wrong_h}, op="add_rmsnorm", x=x, residual=residual, weight=w, eps=EPS)


def test_fused_backward_with_a_gradient_on_h_too():
    """Liger's fused add + RMSNorm test backpropagates into both outputs: x's gradient is then
    gh + the VJP of gy; forgetting gh is caught, and so is an h-gradient that is dropped."""
    x, w, _, gy = _inputs(shape=(32, 256))
    residual, _, _, gh = _inputs(shape=(32, 256), seed=1)
    xr, rr = x.clone().requires_grad_(), residual.clone().requires_grad_()
    h = xr + rr
    y = defective.careful_rms_norm(h, w, None, EPS)
    torch.autograd.backward((y, h), (gy, gh))
    kwargs = dict(op="add_rmsnorm", x=x, residual=residual, weight=w, gy=gy, eps=EPS)
    assert_close_to_exact({"y": y, "h": h, "gx": xr.grad}, gh=gh, **kwargs)
    assert torch.equal(xr.grad, rr.grad)
    with pytest.raises(AssertionError, match="gx"):
        assert_close_to_exact({"y": y, "h": h, "gx": xr.grad}, **kwargs)  # the judge was not told about gh
    with pytest.raises(AssertionError, match="gx"):
        assert_close_to_exact({"y": y, "h": h, "gx": (xr.grad.float() - gh.float()).bfloat16()}, gh=gh, **kwargs)


@pytest.mark.parametrize("scaling", ["tensor", "row"])
def test_fp8_output_with_its_scale(scaling):
    x, w, _, _ = _inputs(shape=(32, 256))
    q, scale = rms_norm_fp8(x, w, None, EPS, scaling=scaling, out_dtype=torch.float8_e4m3fn)
    verdict = assert_close_to_exact({"y": q, "scale": scale}, op="rmsnorm", x=x, weight=w, eps=EPS, scaling=scaling)
    assert verdict.max_ratio <= 1
    stale_q, stale_scale = defective.rms_norm_fp8_stale_scale(x * 64, w, None, EPS)
    with pytest.raises(AssertionError, match="scale"):
        assert_close_to_exact({"y": stale_q, "scale": stale_scale}, op="rmsnorm", x=x * 64, weight=w, eps=EPS,
                              scaling="tensor")


@pytest.mark.parametrize("call, text", [
    (dict(actual={"z": 1}), "unknown key"),
    (dict(gx=True), "pass gy="),
    (dict(weight_shape=(7,)), "weight must have shape (256,)"),
    (dict(x_dtype=torch.float64), "x in fp64"),
    (dict(fp8_y=True), "needs its scale"),
    (dict(op="add_rmsnorm"), "pass residual="),
    (dict(semantics="hf"), "semantics must be one of"),
])
def test_what_a_caller_gets_wrong_is_a_usage_error(call, text):
    x, w, _, gy = _inputs(shape=(4, 256))
    if "x_dtype" in call:
        x = x.to(call["x_dtype"])
    if "weight_shape" in call:
        w = torch.ones(call["weight_shape"], dtype=torch.bfloat16)
    y = defective.careful_rms_norm(x, w if w.shape[0] == 256 else None, None, EPS)
    actual = call.get("actual", {"y": y.to(torch.float8_e4m3fn)} if "fp8_y" in call else
                      ({"y": y, "gx": y} if "gx" in call else y))
    with pytest.raises(UsageError, match=text.replace("(", r"\(").replace(")", r"\)")):
        assert_close_to_exact(actual, op=call.get("op", "rmsnorm"), x=x, weight=w, eps=EPS,
                              semantics=call.get("semantics", "exact"))


def test_a_saved_failure_replays_without_the_kernel(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NORMTHEORY_SAVE_FAILURES", str(tmp_path))
    x, w, _, _ = _inputs()
    with pytest.raises(AssertionError) as info:
        assert_close_to_exact(defective.truncating_rms_norm(x, w, None, EPS), op="rmsnorm", x=x, weight=w, eps=EPS)
    saved = [p for p in tmp_path.iterdir() if p.suffix == ".npz"]
    assert len(saved) == 1 and f"python -m normtheory.testing.replay {saved[0]}" in str(info.value)
    capsys.readouterr()
    assert replay_main([str(saved[0])]) == 1
    assert "y, bf16: mismatched elements" in capsys.readouterr().out
    (tmp_path / "junk.npz").write_text("not an npz")
    assert replay_main([str(tmp_path / "junk.npz")]) == 2


def test_pytest_shows_the_callers_frame(pytester):
    pytester.makepyfile(test_suite="""
        import torch
        from normtheory.kernels import defective
        from normtheory.testing import assert_close_to_exact

        def test_my_kernel():
            x = torch.randn(4, 64).bfloat16()
            assert_close_to_exact(defective.truncating_rms_norm(x, None, None, 1e-6), op="rmsnorm", x=x, eps=1e-6)
    """)
    result = pytester.runpytest("--tb=long", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "def test_my_kernel" in output and "mismatched elements" in output
    assert "def assert_close_to_exact" not in output
