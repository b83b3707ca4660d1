"""What the equivalence checks can see: the centring check's one-rounding bound, the MDE of
the logits check, and the scan of every single uncentred writer (theory/equivalence/writers.py)."""

import pytest

from normtheory.theory.equivalence.check import Comparison, inference_check, make_batch
from normtheory.theory.equivalence.convert import reference_anatomy
from normtheory.theory.equivalence.models import DecoderConfig, random_decoder
from normtheory.theory.equivalence.subjects import reference_subject
from normtheory.theory.equivalence.writers import WriterResult, centring_check, writer_scan

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/torch_threads.py


CFG = DecoderConfig(vocab=16, d=16, n_layers=2, n_heads=2, max_len=6)


@pytest.fixture(scope="module")
def subject():
    return reference_subject(random_decoder(CFG, 3))


@pytest.mark.parametrize("target", ["rmsnorm", "crmsnorm"])
@pytest.mark.parametrize("fmt", ["fp64", "fp32", "bf16"])
def test_centring_check_holds_for_the_right_conversion_and_refutes_every_uncentred_writer(subject, target, fmt):
    assert centring_check(subject, target, fmt).passed
    for writer in reference_anatomy(CFG).writers:
        report = centring_check(subject, target, fmt, skip_recentre=frozenset({writer.weight}))
        assert not report.passed, (writer.weight, fmt)
        assert report.worst.name.startswith("writer " + writer.weight.removesuffix(".weight"))  # it names the writer


def test_centring_bound_is_tight():
    """One rounding per stored element, u|c|: the worst writer uses a fair share of it (a bound
    20x too loose would let a mis-centring 20x the rounding through unseen)."""
    subject = reference_subject(random_decoder(CFG, 4))
    for fmt in ("fp32", "bf16"):
        report = centring_check(subject, "rmsnorm", fmt)
        assert 0.05 < report.worst.ratio <= 1.0, (fmt, report.worst.ratio)


def test_logits_mde_exceeds_the_bound_by_the_power_quantile():
    c = Comparison("logits", 1.0, 10.0, 0.1, bound=2.0, typical=0.4)
    assert c.mde == pytest.approx(2.0 + 1.2816 * 0.4) and c.mde_relative == pytest.approx(c.mde / 10.0)
    assert Comparison("x", 1.0, 10.0, 0.1, bound=2.0).mde == 2.0  # no error model: the bound


def test_inference_report_states_its_mde(subject):
    idx, _ = make_batch(CFG.vocab, 2, CFG.max_len, 1)
    report = inference_check(subject, "rmsnorm", "bf16", idx, samples=8)
    assert report.passed and report.verdict == "HOLDS"
    c = report.comparisons[0]
    assert c.bound < c.mde < 1.5 * c.bound and report.mde_relative == pytest.approx(c.mde / c.reference_norm)


def test_writer_scan_in_bf16_accounts_for_every_writer(subject):
    idx, labels = make_batch(CFG.vocab, 2, CFG.max_len, 1)
    rows = writer_scan(subject, "rmsnorm", "bf16", idx, labels, samples=8)
    assert [r.writer for r in rows] == [w.weight for w in reference_anatomy(CFG).writers]
    assert all(r.accounted_for and r.centring_detected for r in rows)
    for r in rows:  # the logits check sees exactly the writers whose effect exceeds its MDE (80% power)
        if r.effect_relative > 1.5 * r.logits_mde_relative:
            assert r.logits_detected, r


def test_an_undetected_writer_above_the_mde_is_not_accounted_for():
    assert not WriterResult("w", 0.3, False, 0.1, False, False).accounted_for
    assert WriterResult("w", 0.05, False, 0.1, False, False).accounted_for
    assert WriterResult("w", 0.3, False, 0.1, False, True).accounted_for


def test_qk_norm_decoder_converts(subject):
    """QK-Norm reads q and k, not the stream: the conversion of the stream's LNs still holds."""
    qk = reference_subject(random_decoder(CFG.replace(qk_norm=True), 5))
    idx, _ = make_batch(CFG.vocab, 2, CFG.max_len, 1)
    assert inference_check(qk, "rmsnorm", "fp64", idx, samples=8).relative_difference < 1e-12
    wrong = inference_check(qk, "rmsnorm", "fp64", idx, samples=8, skip_recentre=frozenset({"blocks.1.fc_out.weight"}))
    assert not wrong.passed
