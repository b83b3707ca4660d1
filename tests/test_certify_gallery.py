"""The certifier against a gallery of deliberately defective kernels (tests/gallery.py):
each defect fails with the right finding, careful kernels pass."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from normtheory.certify.api import certify_kernel, prepare  # noqa: E402
from normtheory.kernels import defective as gallery  # noqa: E402

D = 64
BUDGET = 160


def certify(kernel, *, op="rmsnorm", format="bf16", search=False, backward=False, **kw):
    config = prepare(kernel, op=op, format=format, d=D, budget=kw.pop("budget", BUDGET), search=search,
                     backward=backward, **kw)
    cert, _ = certify_kernel(config, op=op)
    return cert


def findings(cert) -> str:
    return "\n".join(cert["findings"])


@pytest.mark.parametrize("kernel,op,format", [
    (gallery.careful_rms_norm, "rmsnorm", "bf16"),
    (gallery.careful_rms_norm, "rmsnorm", "fp32"),
    (gallery.careful_layer_norm, "layernorm", "bf16"),
    (gallery.careful_layer_norm, "layernorm", "fp16"),
    ("torch.layer_norm", "layernorm", "bf16"),
    ("torch.rms_norm", "rmsnorm", "fp16"),
    ("torch.rms_norm", "rmsnorm", "fp32"),
])
def test_careful_kernels_pass(kernel, op, format):
    cert = certify(kernel, op=op, format=format, search=True)
    assert cert["verdict"] == "pass", findings(cert)
    assert cert["forward"]["max_err_over_bound"] <= 1
    assert cert["determinism"] is True


@pytest.mark.parametrize("kernel,op,format,extra,expected", [
    (gallery.fp16_sum_of_squares_rms_norm, "rmsnorm", "bf16", {}, "fails `default` on near_overflow"),
    (gallery.one_pass_layer_norm, "layernorm", "fp32", {}, "fails `default` on offset_1e4"),
    (gallery.eps_outside_rms_norm, "rmsnorm", "bf16", {}, "fails `default` on tiny"),
    (gallery.truncating_rms_norm, "rmsnorm", "bf16", {}, "forward fails `default`"),
    (gallery.nondeterministic_rms_norm, "rmsnorm", "fp32", {}, "output changes run to run"),
    (gallery.gemma_offset_in_bf16, "rmsnorm", "fp32", {"affine": "offset_weight"}, "forward fails `default`"),
    (gallery.nan_to_num_rms_norm, "rmsnorm", "bf16", {}, "NaN inputs turned into numbers"),
    (gallery.bit_trick_rsqrt_rms_norm, "rmsnorm", "fp32", {}, "forward fails `default`"),
])
def test_defective_kernels_fail_with_the_right_finding(kernel, op, format, extra, expected):
    cert = certify(kernel, op=op, format=format, **extra)
    assert cert["verdict"] == "fail"
    assert expected in findings(cert), findings(cert)


def test_one_pass_failure_is_explained_by_the_onepass_model_first():
    cert = certify(gallery.one_pass_layer_norm, op="layernorm", format="fp32")
    explanation = [f for f in cert["findings"] if f.startswith("forward errors are consistent with")]
    assert explanation and explanation[0].split("with ")[1].startswith("model:onepass")


def test_fp16_accumulation_shows_in_the_safe_domain():
    cert = certify(gallery.fp16_sum_of_squares_rms_norm)
    domain = cert["safe_domain"]
    # Σx² of 64 entries overflows fp16 (max 65504) once max|x| reaches about 2^6..2^8
    assert domain["max_abs"] is not None and domain["max_abs"] < 2.0**10
    assert "fails inside the domain" in findings(cert)


def test_llama_cast_placement_fails_default_but_meets_its_own_model():
    failed = certify("hf.llama_rms_norm", format="bf16")
    assert failed["verdict"] == "fail"
    assert "model:llama" in findings(failed)  # the explanation step names the models it meets
    assert certify("hf.llama_rms_norm", format="bf16", contract="model:llama")["verdict"] == "pass"


def test_search_finds_a_defect_the_structured_families_miss():
    """rsqrt(max(mean x², eps)) is wrong only where mean x² is within a few binades of eps; no
    structured family lands there, the hypothesis search (default budget share) does."""
    without = certify(gallery.clamped_variance_rms_norm, search=False, budget=512)
    assert without["verdict"] == "pass", findings(without)
    with_search = certify(gallery.clamped_variance_rms_norm, search=True, budget=512)
    assert with_search["verdict"] == "fail"
    assert with_search["search"]["max_err_over_bound"] > 1
    assert "hypothesis search found" in findings(with_search)


@pytest.mark.parametrize("kernel,expected", [
    (gallery.raises, "kernel raised RuntimeError"),
    (gallery.wrong_shape, "of shape (10, 63)"),
    (gallery.wrong_dtype, "of dtype torch.float32"),
    (gallery.returns_inf, "non-finite outputs"),
])
def test_kernel_faults_are_failed_certificates(kernel, expected):
    cert = certify(kernel)
    assert cert["verdict"] == "fail"
    assert expected in findings(cert), findings(cert)


def test_same_seed_same_certificate():
    first = certify(gallery.careful_layer_norm, op="layernorm", search=True, seed=7)
    second = certify(gallery.careful_layer_norm, op="layernorm", search=True, seed=7)
    for cert in (first, second):
        cert.pop("timing")
    assert first == second


def test_fused_add_rmsnorm_passes_and_checks_the_residual_sum():
    cert = certify("add_rmsnorm", op="add_rmsnorm", format="bf16")
    assert cert["verdict"] == "pass", findings(cert)


def test_wrong_backward_fails_on_gx_while_forward_passes():
    cert = certify(gallery.wrong_backward_rms_norm, backward=True)
    assert cert["verdict"] == "fail"
    assert cert["forward"]["max_err_over_bound"] <= 1
    assert cert["backward"]["gx"]["max_err_over_bound"] > 1
    assert "backward gx fails `default`" in findings(cert)


@pytest.mark.parametrize("kernel,op", [(gallery.careful_rms_norm, "rmsnorm"), (gallery.careful_layer_norm, "layernorm")])
def test_careful_kernels_pass_backward(kernel, op):
    for format in ("bf16", "fp32"):
        cert = certify(kernel, op=op, format=format, backward=True)
        assert cert["verdict"] == "pass", findings(cert)
        assert set(cert["backward"]) >= {"gx", "gw"}


@pytest.mark.slow
def test_compiled_kernel_is_certified_with_compile_time_apart():
    cert = certify("compiled.rms_norm", format="bf16", backward=True, budget=48)
    assert cert["verdict"] == "pass", findings(cert)
    assert cert["timing"]["compile_seconds"] > 0


def test_autocast_certifies_the_dtype_autocast_returns():
    cert = certify("torch.rms_norm", format="bf16", autocast=True)
    assert cert["out_format"] in ("bf16", "fp32")
    assert cert["verdict"] == "pass", findings(cert)


def test_lp_naive_kernel_fails_where_it_overflows_and_the_stable_one_passes():
    # p = 8 in fp16: (1/d)Σ|x|^8 overflows fp32 from max|x| ≈ 2.8e4, inside fp16's range
    naive = certify("lp.naive", op="lpnorm", p=8, format="fp16")
    assert naive["verdict"] == "fail" and "near_overflow" in findings(naive)
    stable = certify("lp.stable", op="lpnorm", p=8, format="fp16", search=True)
    assert stable["verdict"] == "pass", findings(stable)
    assert "backward not certified" in findings(stable)


def test_captured_activations_are_certified_with_the_families(tmp_path):
    import ml_dtypes
    import numpy as np

    rng = np.random.default_rng(3)
    # "real" activations: a massive outlier channel on a large offset, as in LLM residual streams
    acts = rng.standard_normal((6, D)) + 3e3
    acts[:, 5] = 6e4
    np.savez(tmp_path / "acts.npz", x=acts.astype(ml_dtypes.bfloat16).view(np.uint16))
    cert = certify(gallery.careful_layer_norm, op="layernorm", inputs=str(tmp_path / "acts.npz"), budget=200)
    assert "captured" in cert["forward"]["max_err_over_bound_by_family"]
    assert "captured" in cert["families"] and cert["inputs_tested"] <= 200
    assert cert["verdict"] == "pass", findings(cert)
    # fp32 values (not bits); without the outlier, |mean|/std = 3e3 is what breaks one-pass variance
    np.savez(tmp_path / "acts32.npz", x=(rng.standard_normal((6, D)) + 3e3).astype(np.float32))
    broken = certify(gallery.one_pass_layer_norm, op="layernorm", format="fp32",
                     inputs=str(tmp_path / "acts32.npz"), budget=200)
    assert broken["forward"]["max_err_over_bound_by_family"]["captured"] > 1


def test_elements_the_contract_cannot_judge_are_counted_and_named():
    # with eps = 0 nothing floors the computed variance (bounds/forward.py, step 4): on rows of
    # subnormals its error is all underflow, so `default` has no finite bound there — said, not
    # silently passed. (With eps > 0 every row gets at least the floor's bound; bf16 rows with
    # |mean|/std = 1e4, this test's former case, now have a finite Welford bound even at eps = 0.)
    cert = certify(gallery.careful_layer_norm, op="layernorm", format="bf16", eps=0.0)
    assert cert["forward"]["unbounded_elements"] > 0
    assert "tiny" in cert["forward"]["unbounded_elements_by_family"]
    assert "normal" not in cert["forward"]["unbounded_elements_by_family"]
    assert any("no finite bound" in f for f in cert["findings"])


def test_backward_failures_are_explained_per_quantity():
    # torch's CPU layer_norm backward reduces gb = Σ_rows gy in the input precision (bf16): the
    # explanation step names the bf16-accumulation model for gb
    cert = certify("torch.layer_norm", op="layernorm", format="bf16", backward=True, budget=256)
    gb = [f for f in cert["findings"] if f.startswith("backward gb errors are consistent with")]
    assert gb and "model:bf16_accum" in gb[0], findings(cert)


def test_rows_scaled_into_the_domain_stay_representable():
    import numpy as np

    from normtheory.certify.inputs import clip_to_domain
    from normtheory.formats import get_format

    bf16 = get_format("bf16")
    # a heavy-tailed row far above 2^20 whose small entries land in bf16's subnormals when scaled
    row = bf16.round_to_float64(np.array([[3e37, 1.0, 3.07e-7, -5.13e-7, 7.31e-7, 2.9e-8]]))
    clipped = clip_to_domain(row, 2.0**20, bf16)
    assert np.max(np.abs(clipped)) <= 2.0**20
    assert bf16.is_representable(clipped).all()
    assert not bf16.is_representable(np.ldexp(row, -int(np.ceil(np.log2(3e37 / 2.0**20))))).all()
