"""Certifying norm → fp8 kernels (`--out-format fp8_* --scaling R`): the kernel returns
(y, scale) with y ≈ q / scale; the dequantized output is judged by the fp8 output bound at the
kernel's own scales, and the scales must be ones the recipe can give."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from normtheory.certify.api import certify_kernel, prepare  # noqa: E402
from normtheory.certify.check import check_recording  # noqa: E402
from normtheory.certify.recording import load  # noqa: E402
from normtheory.cli import main  # noqa: E402
from normtheory.errors import UsageError  # noqa: E402
from normtheory.kernels import defective  # noqa: E402


def certify(kernel, op="rmsnorm", out_format="fp8_e4m3fn", scaling="tensor", **kw):
    config = prepare(kernel, op=op, format="bf16", out_format=out_format, scaling=scaling, d=64,
                     budget=kw.pop("budget", 120), **kw)
    return certify_kernel(config, op=op)[0]


@pytest.mark.parametrize("kernel,op", [("fp8.rms_norm", "rmsnorm"), ("fp8.layer_norm", "layernorm")])
@pytest.mark.parametrize("out_format", ["fp8_e4m3fn", "fp8_e5m2"])
@pytest.mark.parametrize("scaling", ["tensor", "row", "block:16", "mx"])
def test_catalog_fp8_kernels_pass(kernel, op, out_format, scaling):
    cert = certify(kernel, op=op, out_format=out_format, scaling=scaling, search=False)
    assert cert["verdict"] == "pass", cert["findings"]
    assert cert["scaling"] == scaling and cert["backward"] == {}


def test_double_rounding_through_bf16_fails():
    cert = certify(defective.rms_norm_fp8_double_rounded, search=False)
    assert cert["verdict"] == "fail"
    assert cert["forward"]["max_err_over_bound"] > 1


def test_a_stale_scale_fails_the_scale_check():
    cert = certify(defective.rms_norm_fp8_stale_scale, search=False)
    assert cert["verdict"] == "fail"
    assert any("scale the recipe cannot give" in f for f in cert["findings"])


def test_record_and_check_an_fp8_kernel(tmp_path, capsys):
    path = tmp_path / "fp8.npz"
    assert main(["record", "fp8.rms_norm", "--op", "rmsnorm", "--format", "bf16", "--out-format", "fp8_e5m2",
                 "--scaling", "row", "--d", "32", "--rows-per-family", "2", "--out", str(path)]) == 0
    arrays, meta = load(str(path))
    assert "scale" in arrays and meta["scaling"] == "row"
    assert check_recording(arrays, meta)["verdict"] == "pass"
    arrays["scale"] = arrays["scale"] * 2  # every row's scale doubled: not the recipe's, and saturating
    assert check_recording(arrays, meta)["verdict"] == "fail"


@pytest.mark.parametrize("kw,text", [
    ({"scaling": None}, "needs --scaling"),
    ({"scaling": "delayed"}, "amax history"),
    ({"scaling": "block:0"}, "unknown scaling"),
    ({"out_format": "fp8_e4m3fnuz"}, "certify supports"),
])
def test_fp8_usage_errors(kw, text):
    with pytest.raises(UsageError, match=text):
        certify("fp8.rms_norm", **kw)


def test_plain_kernel_with_fp8_flags_is_sent_to_an_fp8_kernel():
    """Issue 15: the messages used to loop ("drop --scaling", then "needs --scaling"); every one
    now names the way out, an fp8.* kernel."""
    for flags in ({"out_format": "fp8_e4m3fn", "scaling": "tensor"}, {"out_format": "fp8_e4m3fn"},
                  {"scaling": "tensor"}):
        with pytest.raises(UsageError, match=r"fp8\.rms_norm or fp8\.layer_norm"):
            prepare("torch.rms_norm", op="rmsnorm", format="bf16", d=8, **flags)
    with pytest.raises(UsageError, match="returns an fp8 output with a scale: give --out-format"):
        prepare("fp8.rms_norm", op="rmsnorm", format="bf16", d=8)
