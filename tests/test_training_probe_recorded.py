"""The recorded reference runs (tests/data/training/*.json, written by `normtheory train-probe
--probe P --json`, the commands in docs/trained_claims.md) re-judged with today's judging code:
every verdict must be the registered one, and a deliberately wrong reading of the same records
(arms swapped) must not be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from normtheory.cli import main
from normtheory.theory.training.claims import claims_for
from normtheory.theory.training.judge import judge_result
from normtheory.theory.training.probes import ProbeSettings, default_lr

DATA = Path(__file__).parent / "data" / "training"
PROBES = ("curse_of_depth", "gradient_profile", "warmup")


def _load(probe: str) -> dict:
    return json.loads((DATA / f"{probe}.json").read_text())


@pytest.mark.parametrize("probe", PROBES)
def test_recorded_reference_run_reproduces_the_registered_verdicts(probe):
    result = _load(probe)
    # recorded at the reference settings, the ones the registry speaks about
    assert result["settings"] == ProbeSettings(probe=probe, lr=default_lr(probe)).as_dict()
    judged = judge_result(result)
    verdicts = {c["id"]: c["verdict"] for c in judged["claims"]}
    assert verdicts == {c.id: c.expected for c in claims_for(probe)}
    assert main(["train-probe", "--from", str(DATA / f"{probe}.json")]) == 0


SWAPS = {"curse_of_depth": ("pre_ln", "lns"), "gradient_profile": ("pre_ln", "post_ln"),
         "warmup": ("post_ln/warmup", "post_ln/no_warmup")}


@pytest.mark.parametrize("probe", PROBES)
def test_swapping_two_arms_changes_a_verdict(probe):
    """The same records read with two arms' labels exchanged: a judge that ignored which arm is
    which (or a registry that accepted anything) would still report 'as registered'."""
    result = _load(probe)
    a, b = SWAPS[probe]
    result["arms"][a], result["arms"][b] = result["arms"][b], result["arms"][a]
    assert not judge_result(result)["all_as_registered"]
