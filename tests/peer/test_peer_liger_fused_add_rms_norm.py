"""Liger's fused add + RMSNorm test re-written: its shapes, dtypes and casting modes, with a
residual and gradients into both outputs (gh), judged by assert_close_to_exact instead of
atol/rtol (peer_cases.py). CPU: a torch composition of each mode's semantics (summed in another
order than the reference, as a kernel would); CUDA (`gpu`): the installed Liger kernel."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import peer_cases as pc  # noqa: E402

CASES = pc.liger_rms_norm_cases(residual=True)


@pytest.mark.parametrize("case", pc.split(CASES))
def test_careful_composition(case):
    pc.run_suite_case(case)


@pytest.mark.gpu
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_liger_kernel(case, in_place):
    pytest.importorskip("liger_kernel")
    from liger_gpu import liger_outputs

    pc.judge_case(case, 0, lambda c, inputs: liger_outputs(c, inputs, in_place=in_place))
