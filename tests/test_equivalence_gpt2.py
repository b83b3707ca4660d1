"""The conversion applied to Hugging Face GPT-2 (random weights from a GPT2Config; no download),
always compared with the untouched HF model."""

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from normtheory.theory.equivalence.check import (  # noqa: E402
    FP64_RELATIVE_REQUIREMENT,
    gradient_check,
    inference_check,
    make_batch,
)
from normtheory.theory.equivalence.convert import ConversionRefused  # noqa: E402
from normtheory.theory.equivalence.gpt2 import convert_gpt2, gpt2_as_reference, random_gpt2  # noqa: E402
from normtheory.theory.equivalence.subjects import gpt2_subject  # noqa: E402

SMALL = dict(d=16, n_layer=2, n_head=2, vocab=32, n_positions=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/torch_threads.py


@pytest.fixture(scope="module")
def subject():
    return gpt2_subject(random_gpt2(seed=7, **SMALL))


def test_reference_decoder_carries_gpt2s_function(subject):
    # the error model runs on the reference decoder: it must compute HF's function
    idx, _ = make_batch(32, 2, 8, 0)
    hf = subject.original(idx).logits
    ours = gpt2_as_reference(subject.original)(idx)
    assert ((ours - hf).abs().max() / hf.abs().max()) < 1e-13


@pytest.mark.parametrize("target", ["rmsnorm", "crmsnorm"])
def test_fp64_logits_and_gradients(subject, target):
    idx, labels = make_batch(32, 2, 8, 1)
    for report in (inference_check(subject, target, "fp64", idx, samples=16),
                   gradient_check(subject, target, "fp64", idx, labels, samples=16)):
        assert report.passed, report.worst
        assert report.relative_difference <= FP64_RELATIVE_REQUIREMENT


@pytest.mark.parametrize("fmt", ["fp32", "bf16"])
def test_low_precision_within_derived_bound(subject, fmt):
    idx, labels = make_batch(32, 2, 8, 2)
    for report in (inference_check(subject, "crmsnorm", fmt, idx, samples=16),
                   gradient_check(subject, "crmsnorm", fmt, idx, labels, samples=16)):
        assert report.passed, report.worst


@pytest.mark.parametrize("fmt", ["fp64", "fp32"])
def test_wrong_conversion_is_caught(subject, fmt):
    idx, labels = make_batch(32, 2, 8, 3)
    wrong = frozenset({"transformer.h.1.attn.c_proj.weight"})
    assert not inference_check(subject, "rmsnorm", fmt, idx, samples=8, skip_recentre=wrong).passed
    assert not gradient_check(subject, "rmsnorm", fmt, idx, labels, samples=8, skip_recentre=wrong).passed


def test_converted_model_is_an_untied_hf_model_and_the_original_is_untouched():
    model = random_gpt2(seed=1, **SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert_gpt2(model, "crmsnorm")
    assert isinstance(converted, transformers.GPT2LMHeadModel)
    assert converted.lm_head.weight.data_ptr() != converted.transformer.wte.weight.data_ptr()
    assert converted.lm_head.bias is not None
    assert converted.transformer.wte.weight.shape == (32, 15)
    assert converted.transformer.h[0].attn.c_attn.weight.shape == (15, 48)  # Conv1D: (in, out)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    idx, _ = make_batch(32, 2, 8, 4)
    expected = model(idx).logits
    assert ((converted(idx).logits - expected).abs().max() / expected.abs().max()) < FP64_RELATIVE_REQUIREMENT


def test_refuses_branch_end_dropout_unless_inference_only():
    model = random_gpt2(seed=0, resid_pdrop=0.1, **SMALL)
    with pytest.raises(ConversionRefused, match="resid_pdrop"):
        convert_gpt2(model, "rmsnorm")
    converted = convert_gpt2(model, "rmsnorm", inference_only=True)
    assert all(m.p == 0.0 for m in converted.modules() if isinstance(m, nn.Dropout))


def test_refuses_unknown_layers_and_cross_attention():
    model = random_gpt2(seed=0, **SMALL)
    model.transformer.h[0].mlp.act = nn.Identity()
    with pytest.raises(ConversionRefused, match="unknown layer transformer.h.0.mlp.act"):
        convert_gpt2(model, "rmsnorm")
    with pytest.raises(ConversionRefused, match="cross-attention"):
        convert_gpt2(random_gpt2(seed=0, add_cross_attention=True, **SMALL), "rmsnorm")
    with pytest.raises(ConversionRefused, match="GPT2LMHeadModel"):
        convert_gpt2(nn.Linear(2, 2), "rmsnorm")
