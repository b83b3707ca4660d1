"""Claims as registered expectations: the judge (Holm within a claim, MDE, the three
verdicts), the registry, and the committed H100 recordings re-judged claim by claim."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from normtheory.theory.claims import core, registry
from normtheory.theory.claims.evidence import PROTOCOL_BUDGET_EXPONENT, Evidence, log_ratio_of_means
from normtheory.theory.meanfield import constants as C

DATA = Path(__file__).parent / "data" / "meanfield"
RECORD_FILES = sorted(DATA.glob("*_d*.json"))

# ---------------------------------------------------------------- statistics of the judge


@pytest.mark.parametrize("t, dof, upper_tail", [(2.3646, 7, 0.025), (63.657, 1, 0.005), (1.6973, 30, 0.05)])
def test_student_t_tail_matches_printed_tables(t, dof, upper_tail):
    # printed t tables (4-5 significant digits)
    assert core.student_t_sf(t, dof) == pytest.approx(upper_tail, rel=2e-3)
    assert core.student_t_quantile(1 - upper_tail, dof) == pytest.approx(t, rel=2e-4)


def _test(measured, se=0.1, lower=1.0, upper=1.0, **kw):
    return core.Test("t", "q", measured, se, 7, lower, upper, **kw)


def test_p_value_counts_only_the_distance_beyond_the_widened_interval():
    inside = _test(1.05, model_error=0.05)
    assert inside.compute_p_value() == 1.0
    beyond = _test(1.35, model_error=0.05)  # 0.3 beyond: t = 3, two-sided
    assert beyond.compute_p_value() == pytest.approx(2 * core.student_t_sf(3.0, 7))
    one_sided = _test(1.35, lower=-math.inf, model_error=0.05)
    assert one_sided.compute_p_value() == pytest.approx(core.student_t_sf(3.0, 7))
    assert _test(0.0, lower=-math.inf).compute_p_value() == 1.0  # an upper bound is not violated from below
    deterministic = _test(1.0 + 1e-9, se=0.0)
    assert deterministic.compute_p_value() == 0.0


def test_holm_is_step_down_and_controls_the_family_not_each_test():
    # p = 0.001, 0.02, 0.04 at m = 3: Holm's thresholds 0.05/3, 0.05/2, 0.05/1 reject all three;
    # Bonferroni (0.05/3 each) would reject only the first.
    tests = [_test(1.0) for _ in range(3)]
    for t, p in zip(tests, (0.001, 0.02, 0.04)):
        t.compute_p_value = lambda p=p: p
    core.holm(tests)
    assert [t.rejected for t in tests] == [True, True, True]
    tests = [_test(1.0) for _ in range(3)]
    for t, p in zip(tests, (0.001, 0.03, 0.04)):
        t.compute_p_value = lambda p=p: p
    core.holm(tests)
    assert [t.rejected for t in tests] == [True, False, False]  # 0.03 > 0.05/2 stops the procedure


def test_mde_is_model_error_plus_critical_t_plus_power_t_times_se():
    t = _test(1.0, se=0.01, model_error=0.02, systematic=0.01)
    mde = t.compute_mde(4)
    crit = core.student_t_quantile(1 - 0.05 / 8, 7) + core.student_t_quantile(0.8, 7)
    assert mde == pytest.approx(0.03 + crit * 0.01)


def _claim(builder, resolution=0.1, expectation="holds"):
    return core.Claim("c", "src", "says", "exact", "judged", expectation, "evidence", builder, resolution)


def test_the_three_verdicts_and_the_exit_code():
    holds = core.judge(_claim(lambda ev: [_test(1.0, se=0.001)]), None)
    refuted = core.judge(_claim(lambda ev: [_test(2.0, se=0.001)]), None)
    underpowered = core.judge(_claim(lambda ev: [_test(1.0, se=1.0)]), None)
    empty = core.judge(_claim(lambda ev: []), None)
    assert (holds.verdict, refuted.verdict, underpowered.verdict) == ("HOLDS", "REFUTED", "INCONCLUSIVE")
    assert underpowered.underpowered and "underpowered" in underpowered.reason
    assert empty.verdict == "INCONCLUSIVE" and not empty.tests
    assert core.exit_code([holds, empty]) == 0  # a claim without evidence is not judged
    assert core.exit_code([holds, refuted]) == 1
    assert core.exit_code([holds, underpowered]) == 1
    assert core.exit_code([holds, underpowered], allow_underpowered=True) == 0


def test_a_claims_verdict_does_not_depend_on_other_claims():
    """The issue's finding: with one Bonferroni family per report, a passing comparison failed
    when judged alone. Here a claim is its own family."""
    borderline = [_test(1.0 + 3.2 * 0.01, se=0.01)]
    alone = core.judge(_claim(lambda ev: list(borderline)), None)
    crowd = [_claim(lambda ev: [_test(1.0, se=0.01) for _ in range(50)]), _claim(lambda ev: list(borderline))]
    assert core.judge_all(crowd, None)[1].verdict == alone.verdict


def test_log_ratio_of_means_uses_the_pairing():
    rng = np.random.default_rng(1)
    shared = rng.lognormal(size=64)
    a, b = 2.0 * shared * rng.lognormal(0, 0.01, 64), shared
    est = log_ratio_of_means(a, b)
    assert est.mean == pytest.approx(math.log(2.0), abs=0.01)
    unpaired = math.hypot(a.std(ddof=1) / a.mean(), b.std(ddof=1) / b.mean()) / 8
    assert est.se < unpaired / 10


# ---------------------------------------------------------------- the registry


def test_every_claim_is_registered_completely():
    ids = [c.id for c in registry.all_claims()]
    assert len(ids) == len(set(ids))
    for c in registry.all_claims():
        assert c.source and c.says and c.judged and c.evidence and c.resolution > 0, c.id
        if c.variant_of:
            assert c.expectation == "refuted" and c.variant_of in ids, c.id
    variants = {c.variant_of for c in registry.all_claims() if c.variant_of}
    for arch_claim in ("mix_ln.init", "hybrid_norm.init", "normformer.init", "ngpt.init", "qk_norm.logit_bound",
                       "peri.linear", "meanfield.grad.conditional", "xiong.thm1.pre.asymptotic"):
        assert arch_claim in variants, f"{arch_claim} has no wrong variant"


def test_trained_claims_are_judged_on_evidence_from_another_command():
    claim = registry.claim_by_id("mix_ln.trained.uniform_gradients")
    assert claim.kind == "trained" and core.judge(claim, Evidence()).reason == "no evidence in this run"
    test = {"label": "probe", "quantity": "spread difference", "measured": -0.5, "se": 0.05, "dof": 7,
            "lower": "-inf", "upper": 0.0, "relative": False}
    result = core.judge(claim, Evidence(trained={claim.id: {"tests": [test]}}))
    assert result.verdict == "HOLDS" and not result.matches  # registered INCONCLUSIVE until evidence exists
    wrong = core.judge(claim, Evidence(trained={claim.id: {"tests": [{**test, "measured": 0.5}]}}))
    assert wrong.verdict == "REFUTED"


# ---------------------------------------------------------------- the H100 sweep, claim by claim


@pytest.fixture(scope="module")
def h100():
    records = [json.loads(p.read_text()) for p in RECORD_FILES]
    assert len(records) == 4, f"no recorded sweep under {DATA}"
    return records


def test_old_recordings_load_with_the_constants_they_were_made_with(h100):
    for record in h100:
        const = C.constants_of_record(record)
        assert const["constants_source"] == "defaults"  # recorded before constants were stored
        setup, d = record["config"]["setup"], record["config"]["d"]
        assert const["d_ff"] == (d if setup == "xiong" else 4 * d)
        assert const["eps"]["pre_ln"] == (0.0 if setup == "xiong" else 1e-5)
        assert const["eps"]["pre_rms"] == (0.0 if setup == "xiong" else 1e-6)
        assert (const["n_tokens"], const["readout"], const["loss"]) == (16, "token", "linear")


@pytest.fixture(scope="module")
def h100_results(h100):
    return {r.claim.id: r for r in core.judge_all(registry.all_claims(), Evidence.from_records(h100))}


def test_every_claim_with_h100_evidence_meets_its_expectation(h100_results):
    judged = {k: r for k, r in h100_results.items() if r.tests}
    assert len(judged) >= 20
    differ = {k: (r.verdict, r.reason) for k, r in judged.items() if not r.matches}
    assert not differ, differ


def test_theorem_1_as_stated_holds_and_its_literal_power_law_reading_does_not(h100_results):
    bound = h100_results["xiong.thm1.pre.bound"]
    assert bound.verdict == "HOLDS"
    exponents = [t for t in bound.tests if t.quantity.startswith("exponent")]
    assert len(exponents) == 4 and all(-0.6 < t.measured < -0.5 for t in exponents)
    assert all(t.systematic == PROTOCOL_BUDGET_EXPONENT for t in exponents)
    assert h100_results["xiong.thm1.pre.asymptotic"].verdict == "HOLDS"
    assert h100_results["xiong.thm1.pre.asymptotic.wrong"].verdict == "REFUTED"
    assert h100_results["xiong.thm1.pre.bound.wrong"].verdict == "REFUTED"


def test_the_sharp_conditional_identity_at_d_512_L_96(h100_results):
    """61.7 predicted vs 61.1 +- 2.4 measured (issue 17), now judged: the per-seed ratio."""
    conditional = h100_results["meanfield.grad.conditional"]
    test = next(t for t in conditional.tests if t.label.startswith("xiong pre_ln d=512 L=96"))
    assert abs(test.measured - 61.143 / 61.67) < 0.05 and not test.rejected
    assert h100_results["meanfield.grad.conditional.wrong"].verdict == "REFUTED"


def test_lns_linear_recursion_is_refuted_and_a_known_refutation_matches(h100_results):
    lns = h100_results["sun.lns.recursion"]
    assert lns.verdict == "REFUTED" and lns.matches


def test_protocol_budget_constant_is_the_recorded_one():
    recorded = json.loads((DATA / "protocol_budget.json").read_text())
    assert PROTOCOL_BUDGET_EXPONENT == recorded["budget_rounded"]
    assert recorded["budget"] <= recorded["budget_rounded"] < recorded["budget"] + 0.01
    variants = {r["variant"] for r in recorded["rows"]}
    assert variants == {"shared readout", "xent loss", "64 tokens"}
