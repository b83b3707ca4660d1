"""vLLM's layernorm kernel test re-written: its token × hidden grid, fp16/bf16/fp32, with and
without residual, weightless, Gemma's (1 + w) and the static fp8 quant, judged by
assert_close_to_exact instead of atol = rtol = 1e-2 (CPU compositions of vLLM's semantics: cast
before the weight, h = x + residual rounded before the norm; fp8 as y / scale saturated)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import peer_cases as pc  # noqa: E402

CASES = pc.vllm_layernorm_cases()


@pytest.mark.parametrize("case", pc.split(CASES))
def test_careful_composition(case):
    pc.run_suite_case(case)
