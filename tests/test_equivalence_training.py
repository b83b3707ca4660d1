"""Training equivalence as Jiang et al. define it (AdamW on the original parameters, conversion
inside the forward), and the quantified failure of AdamW on the converted parameters."""

import pytest

from normtheory.theory.equivalence.models import DecoderConfig, random_decoder
from normtheory.theory.equivalence.subjects import reference_subject
from normtheory.theory.equivalence.training import training_check

CFG = DecoderConfig(vocab=32, d=16, n_layers=2, n_heads=2, max_len=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/torch_threads.py


@pytest.fixture(scope="module")
def subject():
    return reference_subject(random_decoder(CFG, 11))


@pytest.mark.parametrize(("fmt", "target"), [("fp64", "rmsnorm"), ("fp64", "crmsnorm"), ("fp32", "crmsnorm")])
def test_paper_training_stays_within_bound_and_direct_adamw_does_not(subject, fmt, target):
    report = training_check(subject, target, fmt, steps=3, samples=8)
    assert report.passed, report.worst
    # training moved the function, so agreement is not the trivial agreement of two idle runs
    assert report.extra["function_change_during_training"] > 1e-2
    # AdamW on the converted parameters: a different function, far outside the same bound
    assert report.extra["direct_adamw_difference_over_bound"] > 100


def test_wrong_conversion_inside_the_forward_is_caught(subject):
    wrong = frozenset({"blocks.0.fc_out.weight"})
    assert not training_check(subject, "rmsnorm", "fp64", steps=2, samples=8, skip_recentre=wrong).passed


def test_gpt2_training_equivalence():
    pytest.importorskip("transformers")
    from normtheory.theory.equivalence.gpt2 import random_gpt2
    from normtheory.theory.equivalence.subjects import gpt2_subject

    subject = gpt2_subject(random_gpt2(d=16, n_layer=1, n_head=2, vocab=32, n_positions=8, seed=5))
    report = training_check(subject, "crmsnorm", "fp64", steps=2, samples=8)
    assert report.passed, report.worst
    assert report.extra["direct_adamw_difference_over_bound"] > 100
