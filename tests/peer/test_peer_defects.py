"""The peer suites' settings catch what the suites' tolerances let through: one real defect per
suite (normtheory.kernels.regressions' kernels, at the suite's shapes and inputs) fails the
comparator, while the suite's own tolerance passes it against the suite's reference."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import peer_cases as pc  # noqa: E402

from normtheory.kernels.regressions import tree_sum  # noqa: E402


def _fp32_weight_multiply(case, inputs):
    """sglang#22931's kernel in a llama-mode suite: × w in fp32, one rounding."""
    x, w = inputs["x"], inputs["weight"]
    x32 = x.float()
    return {"y": (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + inputs["eps"]) * w.float()).to(x.dtype)}


def _unrounded_sum(case, inputs):
    """vLLM#52104's fused kernel: stores the rounded h, normalizes the fp32 sum."""
    x, residual, w = inputs["x"], inputs["residual"], inputs["weight"]
    h32 = x.float() + residual.float()
    normalized = (h32 * torch.rsqrt(h32.pow(2).mean(-1, keepdim=True) + inputs["eps"])).to(x.dtype)
    return {"y": normalized * w, "h": h32.to(x.dtype)}


def _bf16_statistics(case, inputs):
    """Mean and Σx² accumulated in bf16 trees (sglang#27540, pytorch#66707's class)."""
    x, w, b = inputs["x"], inputs["weight"], inputs["bias"]
    h = x if inputs["residual"] is None else (x.float() + inputs["residual"].float()).to(inputs["residual"].dtype)
    h32 = h.float()
    d = h.shape[-1]
    if case.mode == "layernorm":
        h32 = h32 - tree_sum(h32, torch.bfloat16).float() / d
    y = h32 * torch.rsqrt(tree_sum(h32 * h32, torch.bfloat16).float() / d + inputs["eps"]) * w.float()
    return {"y": (y if b is None else y + b.float()).to(x.dtype)} | ({"h": h} if inputs["residual"] is not None else {})


DEFECTS = [
    ("liger_rms_norm", pc.PeerCase("liger_rms_norm", (2, 128, 512), "bf16", "llama", backward=False,
                                   weight_init="randn"), _fp32_weight_multiply),
    ("vllm_layernorm", pc.PeerCase("vllm_layernorm", (83, 5120), "bf16", "plain", residual=True, backward=False,
                                   weight_init="near_one"), _unrounded_sum),
    ("flash_layer_norm", pc.PeerCase("flash_layer_norm", (4096, 192), "bf16", "layernorm", residual=True,
                                     backward=False, weight_init="randn", residual_dtype="fp32", weight_dtype="fp32"),
     _bf16_statistics),
]


@pytest.mark.parametrize("suite, case, defect", DEFECTS, ids=[d[0] for d in DEFECTS])
def test_the_suites_tolerance_passes_it_and_the_comparator_does_not(suite, case, defect):
    inputs = pc.make_inputs(case, seed=0)
    outputs = defect(case, inputs)
    assert pc.anchor_passes(case, inputs, outputs), "the suite's own tolerance passes this defect"
    with pytest.raises(AssertionError, match="mismatched elements"):
        pc.judge_case(case, 0, defect)
