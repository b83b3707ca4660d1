"""Liger's LayerNorm test re-written (fp32, module and functional weights), judged by
assert_close_to_exact instead of atol = rtol = 1e-5. CPU: a two-pass fp32 composition summed in
another order than the reference; CUDA (`gpu`): the installed Liger kernel."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import peer_cases as pc  # noqa: E402

CASES = pc.liger_layer_norm_cases()


@pytest.mark.parametrize("case", pc.split(CASES))
def test_careful_composition(case):
    pc.run_suite_case(case)


@pytest.mark.gpu
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_liger_kernel(case):
    pytest.importorskip("liger_kernel")
    from liger_gpu import liger_outputs

    pc.judge_case(case, 0, liger_outputs)
