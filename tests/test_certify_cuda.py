"""The certifier on a CUDA device (`gpu`: skipped without one). The gallery's defects are
device-independent torch code, so each must be caught on CUDA exactly as on CPU, and the careful
fp32-compute kernels must pass; the catalog's CUDA kernels must certify to a verdict, the same
one twice for one seed."""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("torch")

from normtheory.certify.api import certify_kernel, prepare  # noqa: E402
from normtheory.kernels import defective as gallery  # noqa: E402

D = 256
BUDGET = 160


def certify(kernel, *, op="rmsnorm", format="bf16", search=False, backward=False, **kw):
    config = prepare(kernel, op=op, format=format, d=D, budget=kw.pop("budget", BUDGET), search=search,
                     backward=backward, device="cuda", **kw)
    cert, _ = certify_kernel(config, op=op)
    return cert


@pytest.mark.gpu
@pytest.mark.parametrize("kernel,op,format", [
    (gallery.careful_rms_norm, "rmsnorm", "bf16"),
    (gallery.careful_layer_norm, "layernorm", "fp16"),
])
def test_careful_kernels_pass_on_cuda(kernel, op, format):
    cert = certify(kernel, op=op, format=format, search=True, backward=True)
    assert cert["verdict"] == "pass", cert["findings"]
    assert cert["environment"]["device"] == "cuda" and "device_name" in cert["environment"]


@pytest.mark.gpu
@pytest.mark.parametrize("kernel,format,expected", [
    (gallery.fp16_sum_of_squares_rms_norm, "bf16", "fails `default` on near_overflow"),
    (gallery.truncating_rms_norm, "bf16", "forward fails `default`"),
    (gallery.nan_to_num_rms_norm, "bf16", "NaN inputs turned into numbers"),
])
def test_defects_are_caught_on_cuda(kernel, format, expected):
    cert = certify(kernel, format=format)
    assert cert["verdict"] == "fail"
    assert expected in "\n".join(cert["findings"])


CATALOG_ON_CUDA = [("torch.rms_norm", "rmsnorm"), ("torch.layer_norm", "layernorm"),
                   ("compiled.rms_norm", "rmsnorm")]
if importlib.util.find_spec("liger_kernel") is not None:
    CATALOG_ON_CUDA += [("liger.rms_norm", "rmsnorm"), ("liger.layer_norm", "layernorm")]


@pytest.mark.gpu
@pytest.mark.parametrize("kernel,op", CATALOG_ON_CUDA)
def test_catalog_kernels_certify_deterministically_on_cuda(kernel, op):
    first = certify(kernel, op=op, backward=True, seed=3)
    second = certify(kernel, op=op, backward=True, seed=3)
    for cert in (first, second):
        cert.pop("timing")
    assert first["verdict"] in ("pass", "fail")
    assert first == second
