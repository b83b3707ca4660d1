"""The real-regressions gallery: the comparator catches every defect and passes every careful
twin (CI: each thread's inputs at a reduced row count; slow: the threads' own shapes). The
anchors' verdicts are measured by benchmarks/regressions_table.py (docs/kernel_authors.md)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from normtheory.kernels.regressions import REGRESSIONS  # noqa: E402
from normtheory.testing import assert_close_to_exact  # noqa: E402

SIZES = [pytest.param(True, id="ci-size"), pytest.param(False, id="thread-size", marks=pytest.mark.slow)]


@pytest.mark.parametrize("small", SIZES)
@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_careful_twin_passes(name, small):
    case = REGRESSIONS[name]
    inputs = case.make_inputs(seed=0, small=small)
    assert assert_close_to_exact(case.careful(inputs), **case.judge_kwargs(inputs)).max_ratio <= 1


@pytest.mark.parametrize("small", SIZES)
@pytest.mark.parametrize("name", [name for name, case in REGRESSIONS.items() if case.defective is not None])
def test_defect_is_caught(name, small):
    case = REGRESSIONS[name]
    inputs = case.make_inputs(seed=0, small=small)
    with pytest.raises(AssertionError, match="mismatched elements"):
        assert_close_to_exact(case.defective(inputs), **case.judge_kwargs(inputs))


def test_every_entry_cites_its_thread_and_anchor():
    for case in REGRESSIONS.values():
        assert case.threads and all("#" in thread for thread in case.threads)
        assert case.anchor.suite and case.anchor.rule and case.inputs_note
