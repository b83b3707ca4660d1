"""Pre-LN ≡ Pre-RMSNorm ≡ Pre-CRMSNorm on normtheory's reference decoder (fp64 properties,
fp32 / bf16 against the derived bound, refusals)."""

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from normtheory.theory.equivalence.check import FP64_RELATIVE_REQUIREMENT, gradient_check, inference_check, make_batch
from normtheory.theory.equivalence.convert import ConversionRefused, convert_reference, reference_anatomy
from normtheory.theory.equivalence.models import DecoderConfig, crms_norm, random_decoder
from normtheory.theory.equivalence.subjects import reference_subject

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/torch_threads.py


# Each example builds two models and runs 2 x 8 error-model passes, so a third of the
# profile's examples (ci: 20, nightly: 666).
_examples = max(5, settings.default.max_examples // 3)


@st.composite
def decoders(draw):
    heads = draw(st.sampled_from([1, 2, 4]))
    d = heads * draw(st.integers(1, 6)) if heads > 1 else draw(st.integers(2, 12))
    cfg = DecoderConfig(
        vocab=draw(st.integers(4, 24)), d=d, n_layers=draw(st.integers(1, 3)), n_heads=heads,
        max_len=draw(st.integers(1, 6)), activation=draw(st.sampled_from(["gelu", "gelu_tanh", "relu"])),
        norm_affine=draw(st.booleans()), head_bias=draw(st.booleans()), tie_head=draw(st.booleans()),
    )
    return cfg, draw(st.integers(0, 2**16))


@settings(max_examples=_examples)
@given(decoders(), st.sampled_from(["rmsnorm", "crmsnorm"]), st.data())
@example((DecoderConfig(vocab=4, d=2, n_layers=1, n_heads=1, max_len=1), 0), "crmsnorm", None)
def test_fp64_equivalence_and_wrong_conversion_caught(model, target, data):
    cfg, seed = model
    subject = reference_subject(random_decoder(cfg, seed))
    idx, labels = make_batch(cfg.vocab, 2, cfg.max_len, seed + 1)
    good = [inference_check(subject, target, "fp64", idx, samples=8),
            gradient_check(subject, target, "fp64", idx, labels, samples=8)]
    for report in good:
        assert report.passed, (report.worst, report.relative_difference)
        assert report.relative_difference <= FP64_RELATIVE_REQUIREMENT
    # the same checks must reject a conversion that leaves one residual writer uncentred
    writers = [w.weight for w in reference_anatomy(cfg).writers]
    wrong = frozenset({writers[-1] if data is None else data.draw(st.sampled_from(writers))})
    bad = [inference_check(subject, target, "fp64", idx, samples=8, skip_recentre=wrong),
           gradient_check(subject, target, "fp64", idx, labels, samples=8, skip_recentre=wrong)]
    assert not any(r.passed for r in bad), [(r.worst.name, r.worst.ratio) for r in bad]


@pytest.mark.parametrize("fmt", ["fp32", "bf16"])
@pytest.mark.parametrize("target", ["rmsnorm", "crmsnorm"])
def test_low_precision_within_derived_bound(fmt, target):
    cfg = DecoderConfig(vocab=32, d=16, n_layers=2, n_heads=2, max_len=8)
    subject = reference_subject(random_decoder(cfg, 3))
    idx, labels = make_batch(cfg.vocab, 2, cfg.max_len, 4)
    for report in (inference_check(subject, target, fmt, idx, samples=16),
                   gradient_check(subject, target, fmt, idx, labels, samples=16)):
        assert report.passed, report.worst
        # the low-precision difference is real (not a disguised fp64 run): it exceeds fp64's level
        assert report.relative_difference > 1e-9


@pytest.mark.parametrize(("fmt", "writer"), [("fp32", "blocks.1.attn_out.weight"), ("bf16", "tok_emb.weight")])
def test_low_precision_bound_rejects_wrong_conversion(fmt, writer):
    # bf16's bound is wide (u = 2^-8 and a ×10 statistical factor): a wrong output projection
    # in the last block stays inside it at this size, an uncentred embedding does not.
    cfg = DecoderConfig(vocab=32, d=16, n_layers=2, n_heads=2, max_len=8)
    subject = reference_subject(random_decoder(cfg, 3))
    idx, _ = make_batch(cfg.vocab, 2, cfg.max_len, 4)
    report = inference_check(subject, "rmsnorm", fmt, idx, samples=16, skip_recentre=frozenset({writer}))
    assert not report.passed


def test_crmsnorm_is_rmsnorm_on_zero_mean_vectors():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    x = x - x.mean(-1, keepdim=True)
    expected = torch.nn.functional.rms_norm(x, (7,), None, 1e-5)[..., :-1]
    torch.testing.assert_close(crms_norm(x[..., :-1], 7, 1e-5), expected, rtol=4 * 2**-53 * 7, atol=0)
    # a CRMSNorm that divides by d - 1 (a plausible bug) is not the same map
    assert not torch.allclose(crms_norm(x[..., :-1], 6, 1e-5), expected, rtol=1e-6, atol=0)


def test_converted_models_have_the_papers_shapes():
    cfg = DecoderConfig(d=8, n_heads=2)
    model = random_decoder(cfg, 0)
    rms, crms = convert_reference(model, "rmsnorm"), convert_reference(model, "crmsnorm")
    assert rms.tok_emb.weight.shape == (cfg.vocab, 8) and crms.tok_emb.weight.shape == (cfg.vocab, 7)
    assert crms.blocks[0].attn_in.weight.shape == (24, 7) and crms.blocks[0].attn_out.weight.shape == (7, 8)
    assert not any("norm" in name for name, _ in rms.named_parameters())
    # the residual writers of the RMSNorm model are zero-mean along d
    assert rms.tok_emb.weight.mean(-1).abs().max() < 1e-15
    assert rms.blocks[0].fc_out.weight.mean(0).abs().max() < 1e-15


@pytest.mark.parametrize(
    ("cfg", "reason"),
    [
        (DecoderConfig(placement="post"), "Post-LN with affine"),
        (DecoderConfig(placement="post", norm_affine=False), "Pre-LN models only"),
        (DecoderConfig(dropout=0.1), "dropout"),
        (DecoderConfig(norm="rmsnorm", norm_affine=False), "already uses rmsnorm"),
    ],
)
def test_refuses_what_it_cannot_convert_exactly(cfg, reason):
    with pytest.raises(ConversionRefused, match=reason):
        convert_reference(random_decoder(cfg, 0), "rmsnorm")


def test_dropout_model_converts_for_inference_only():
    model = random_decoder(DecoderConfig(dropout=0.1), 0)  # eval(): dropout is off
    converted = convert_reference(model, "crmsnorm", inference_only=True)
    idx, _ = make_batch(64, 2, 16, 0)
    expected = model(idx)
    assert ((converted(idx) - expected).abs().max() / expected.abs().max()) < FP64_RELATIVE_REQUIREMENT


@pytest.mark.gpu
@pytest.mark.parametrize("fmt", ["fp32", "bf16"])
@pytest.mark.parametrize("target", ["rmsnorm", "crmsnorm"])
def test_cuda_runs_within_derived_bound(fmt, target):
    # the two models run on the GPU (cuBLAS, fused norm kernels); the error model is the CPU one
    cfg = DecoderConfig(vocab=64, d=64, n_layers=2, n_heads=4, max_len=16)
    subject = reference_subject(random_decoder(cfg, 5))
    idx, labels = make_batch(cfg.vocab, 2, cfg.max_len, 6)
    for report in (inference_check(subject, target, fmt, idx, samples=16, device="cuda"),
                   gradient_check(subject, target, fmt, idx, labels, samples=16, device="cuda")):
        assert report.passed, report.worst
