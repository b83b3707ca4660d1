"""certify / record / check for l2normalize: torch.normalize (F.normalize over the last
dimension) in fp32 and a careful fp32 composition in bf16 pass, forward and backward; defective
twins fail with the right finding: eps under the root instead of the floor, and normalising in
bf16 (the norm rounded to bf16 before the division — what F.normalize does on a bf16 tensor,
docs/l2normalize.md). Small widths and budgets: each run takes seconds."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from normtheory.certify import recording  # noqa: E402
from normtheory.certify.api import certify_kernel, prepare  # noqa: E402
from normtheory.certify.check import check_recording  # noqa: E402
from normtheory.cli import main  # noqa: E402
from normtheory.formats import FORMATS  # noqa: E402

OP = "l2normalize"
D = 64
BUDGET = 128


def normalize_in_fp32(x, weight, bias, eps):
    """A careful composition: the norm, the floor and the division in fp32, one rounding at the end."""
    x32 = x.to(torch.float32)
    return (x32 / x32.norm(2, dim=-1, keepdim=True).clamp_min(eps)).to(x.dtype)


def eps_under_the_root(x, weight, bias, eps):
    """The `add` placement: x·rsqrt(Σx² + eps) in fp32 (an RMSNorm without the 1/d)."""
    x32 = x.to(torch.float32)
    return (x32 * torch.rsqrt(x32.pow(2).sum(-1, keepdim=True) + eps)).to(x.dtype)


def normalize_in_the_input_dtype(x, weight, bias, eps):
    """Norm, floor and division in x's dtype: the norm is rounded to bf16 before the division."""
    return x / x.norm(2, dim=-1, keepdim=True).clamp_min(eps)


def certify(kernel, *, format, search=False, backward=True):
    config = prepare(kernel, op=OP, format=format, d=D, budget=BUDGET, search=search, backward=backward)
    cert, _ = certify_kernel(config)
    return cert


@pytest.mark.parametrize("kernel,format", [("torch.normalize", "fp32"), (normalize_in_fp32, "bf16")])
def test_careful_kernels_pass_forward_and_backward(kernel, format):
    cert = certify(kernel, format=format, search=True)
    assert cert["verdict"] == "pass", cert["findings"]
    assert 0 < cert["forward"]["max_err_over_bound"] <= 1
    assert 0 < cert["backward"]["gx"]["max_err_over_bound"] <= 1


@pytest.mark.parametrize("kernel,expected", [
    (eps_under_the_root, "forward fails `default` on tiny"),
    (normalize_in_the_input_dtype, "forward fails `default` on normal"),
])
def test_defective_twins_fail_with_the_right_finding(kernel, expected):
    cert = certify(kernel, format="bf16", backward=False)
    assert cert["verdict"] == "fail"
    assert expected in "\n".join(cert["findings"]), cert["findings"]


def test_torch_normalize_takes_no_affine(capsys):
    assert main(["certify", "torch.normalize", "--op", OP, "--format", "fp32", "--d", "8", "--affine", "weight"]) == 2
    assert "implements affine none, not weight" in capsys.readouterr().err


def test_record_then_check(tmp_path, capsys):
    path = tmp_path / "l2.npz"
    assert main(["record", "torch.normalize", "--op", OP, "--format", "fp32", "--d", "32", "--rows-per-family", "2",
                 "--out", str(path)]) == 0, capsys.readouterr()
    arrays, meta = recording.load(str(path))
    assert meta["op"] == OP and meta["eps"] == 1e-12 and meta["affine"] == "none"
    cert = check_recording(arrays, meta)
    assert cert["verdict"] == "pass", cert["findings"]
    assert main(["check", str(path), "--json", str(tmp_path / "cert.json")]) == 0
    assert json.loads((tmp_path / "cert.json").read_text())["backward"]["gx"]["max_err_over_bound"] <= 1
    arrays["gx"] = FORMATS["fp32"].round_to_float64(arrays["gx"] * (1 + 2.0**-10))  # 2^14 fp32 ulps off: must fail
    assert check_recording(arrays, meta)["verdict"] == "fail"
