"""Upstream numerics: the installed packages probed against the versioned table.

A covered version that contradicts the table fails; an uncovered one passes and its probed
behaviour is printed (run with -rA or see `normtheory upstream`). The table itself is tested to
be able to fail: a monkeypatched probe on a covered version is reported as a contradiction.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from normtheory.upstream import FACTS, observe_all
from normtheory.upstream.compare import AGREES, CONTRADICTS, NOT_PROBED, UNCOVERED, covering_row, observe
from normtheory.upstream.facts import Fact
from normtheory.upstream.probes import PROBES
from normtheory.upstream.report import markdown_table

BEHAVIOURS = list(dict.fromkeys(fact.behaviour for fact in FACTS))


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_installed_version_agrees_with_the_table(behaviour):
    observation = observe(behaviour)
    print(f"{observation.package} {observation.version}: {behaviour} = {observation.probed!r} "
          f"({observation.status}{'; ' + observation.note if observation.note else ''})")
    assert not observation.failed, (
        f"{observation.package} {observation.version} {behaviour}: probed {observation.probed!r}, "
        f"the table says {observation.expected!r} for this version (normtheory/upstream/facts.py)")


def test_a_changed_behaviour_on_a_covered_version_fails(monkeypatch):
    """ml_dtypes is always installed: pretend its float64 cast changed behaviour."""
    probes = dict(PROBES)
    probes["ml_dtypes.float64_to_bf16"] = lambda: "a behaviour nobody tabled"
    observation = observe("ml_dtypes.float64_to_bf16", probes)
    assert observation.status == CONTRADICTS and observation.failed


def test_an_uncovered_version_is_reported_not_failed(monkeypatch):
    import normtheory.upstream.compare as compare_module

    monkeypatch.setattr(compare_module, "installed_version", lambda package: "0.4.0")  # below every row
    observation = observe("ml_dtypes.float64_to_bf16")
    assert observation.status == UNCOVERED and not observation.failed
    assert observation.probed in {"rounds once", "double-rounds via float32"}


def test_every_behaviour_has_a_probe_and_disjoint_version_ranges():
    assert set(BEHAVIOURS) == set(PROBES)
    for behaviour in BEHAVIOURS:
        rows = [f for f in FACTS if f.behaviour == behaviour]
        assert len({f.package for f in rows}) == 1
        for probe_version in ("0.4.0", "0.5.0", "0.5.3", "0.6.0", "0.7.0", "0.8.5", "1.0", "2.11.0", "2.13.0", "2.14.0"):
            covering = [f for f in rows if covering_row([f], probe_version)]
            assert len(covering) <= 1, (behaviour, probe_version)


def test_local_version_labels_belong_to_their_release():
    row = Fact("b", "torch", "==2.13.0", "v", "", "")
    assert covering_row([row], "2.13.0+cpu") is row and covering_row([row], "2.13.1") is None


def test_the_documented_table_is_the_code_table():
    doc = Path(__file__).resolve().parents[1] / "docs" / "upstream.md"
    assert doc.read_text(encoding="utf-8") == markdown_table(), (
        "docs/upstream.md is stale: normtheory upstream --markdown > docs/upstream.md")


def test_compare_reports_every_behaviour_once():
    observations = observe_all()
    assert [o.behaviour for o in observations] == BEHAVIOURS
    assert {o.status for o in observations} <= {AGREES, CONTRADICTS, UNCOVERED, NOT_PROBED}


def test_drift_report_shows_a_behaviour_that_changed_since_the_lock(tmp_path):
    """A lock made when ml_dtypes 0.6.0 was current: the report must show old -> new."""
    from normtheory.upstream.drift import report

    lock = tmp_path / "old.lock"
    lock.write_text("ml-dtypes==0.6.0 \\\n    --hash=sha256:00\nnumpy==1.26.0\n")
    text, failed = report(str(lock))
    row = next(line for line in text.splitlines() if "ml_dtypes.float64_to_bf16" in line)
    installed = observe("ml_dtypes.float64_to_bf16").probed
    if installed == "rounds once":
        assert "double-rounds via float32 -> rounds once" in row
    assert "packages that moved since" in text and "ml-dtypes" in text
    assert failed == any(o.failed for o in observe_all())
