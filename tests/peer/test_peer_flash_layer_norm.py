"""flash-attention's layer-norm test re-written (hidden sizes, input/residual/weight dtypes,
residual, LayerNorm and RMSNorm; dropout, rowscale and x1 left out), judged by
assert_close_to_exact instead of "twice PyTorch's error plus an atol" (CPU compositions:
h = x + residual in the residual dtype, normalized in fp32, rounded once to the input dtype)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import peer_cases as pc  # noqa: E402

CASES = pc.flash_layer_norm_cases()


@pytest.mark.parametrize("case", pc.split(CASES))
def test_careful_composition(case):
    pc.run_suite_case(case)
