"""Real precision regressions of normalization kernels, each re-created as a small torch kernel
(CPU) beside its careful twin, with the inputs of its thread and the check the affected suite
applied (its "anchor"). docs/kernel_authors.md tables which of them the anchor's tolerance
catches and which `normtheory.testing.assert_close_to_exact` catches; tests/test_testing_regressions.py
asserts that the comparator catches every defect and passes every careful twin.

Written from the threads' descriptions (shapes, dtypes, tolerances, what was rounded where),
not from their code. Every kernel maps an input dict {x, weight, bias, residual, eps} (torch
tensors) to an output dict with the comparator's keys (y, h, scale).

    from normtheory.kernels.regressions import REGRESSIONS
    case = REGRESSIONS["cast_before_weight"]
    inputs = case.make_inputs(seed=0)
    outputs = case.defective(inputs)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from normtheory.kernels.fp8_output import scaled_fp8_cast

Outputs = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Anchor:
    """The check of the suite the defect slipped through (or flaked in), applied as it applies it."""

    suite: str
    rule: str
    reference: Callable[[dict], Outputs]  # the suite's own reference implementation
    passes: Callable[[Outputs, Outputs], bool]  # (kernel's outputs, reference's outputs) -> its check passes


@dataclass(frozen=True)
class Regression:
    name: str
    threads: tuple[str, ...]
    summary: str
    op: str
    careful: Callable[[dict], Outputs]
    defective: Callable[[dict], Outputs] | None  # None: the thread's kernels were all careful (a false alarm)
    make_inputs: Callable[..., dict]  # make_inputs(seed, small=False): the thread's shapes (small: a CI size)
    anchor: Anchor
    inputs_note: str
    semantics: str = "exact"
    scaling: str | None = None
    extra: dict = field(default_factory=dict)

    def judge_kwargs(self, inputs: dict) -> dict:
        """Keyword arguments of assert_close_to_exact for these inputs (besides actual)."""
        kwargs = {key: inputs.get(key) for key in ("x", "weight", "bias", "residual")}
        return {"op": self.op, "eps": inputs["eps"], "semantics": self.semantics, "scaling": self.scaling, **kwargs}


# ---- building blocks -----------------------------------------------------------------------
def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rsqrt_mean_square(h32: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.rsqrt(h32.pow(2).mean(-1, keepdim=True) + eps)


def tree_sum(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Σ over the last axis as a pairwise tree whose every add is rounded to `dtype` (what a
    kernel accumulating in that dtype does; torch's own CPU sums would accumulate in fp32)."""
    values = values.to(dtype)
    while values.shape[-1] > 1:
        if values.shape[-1] % 2:
            values = torch.cat([values, torch.zeros_like(values[..., :1])], dim=-1)
        values = (values[..., 0::2].float() + values[..., 1::2].float()).to(dtype)
    return values


def _assert_close_passes(rtol: float, atol: float, key: str = "y") -> Callable[[Outputs, Outputs], bool]:
    def passes(outputs: Outputs, reference: Outputs) -> bool:
        try:
            torch.testing.assert_close(outputs[key], reference[key], rtol=rtol, atol=atol)
        except AssertionError:
            return False
        return True

    return passes


def _weight_near_one(n: int, dtype: torch.dtype, gen: torch.Generator, std: float = 0.1) -> torch.Tensor:
    return (1.0 + std * torch.randn(n, generator=gen)).to(dtype)


# ---- transformers#33133 / TransformerEngine#1132: cast before vs after the weight ----------
def _rms_weight_after_cast(inputs: dict) -> Outputs:
    """HF LlamaRMSNorm's order: normalize in fp32, cast to the activation dtype, then × w."""
    x, w = inputs["x"], inputs["weight"]
    x32 = x.float()
    return {"y": w * (x32 * _rsqrt_mean_square(x32, inputs["eps"])).to(x.dtype)}


def _rms_weight_in_fp32(inputs: dict) -> Outputs:
    """TE's (and sgl_kernel's old) order: × w in fp32, one rounding to the activation dtype."""
    x, w = inputs["x"], inputs["weight"]
    x32 = x.float()
    return {"y": (x32 * _rsqrt_mean_square(x32, inputs["eps"]) * w.float()).to(x.dtype)}


def _cast_order_inputs(rows: int, n: int, eps: float, weight: str) -> Callable[..., dict]:
    def make(seed: int = 0, small: bool = False) -> dict:
        gen = _generator(seed)
        count = min(rows, 64) if small else rows
        x = torch.randn(count, n, generator=gen).bfloat16()
        w = _weight_near_one(n, torch.bfloat16, gen) if weight == "near_one" else torch.randn(n, generator=gen).bfloat16()
        return {"x": x, "weight": w, "eps": eps}

    return make


# ---- vLLM#52104: fused add + RMSNorm normalizes the unrounded fp32 sum ----------------------
def _fused_add(inputs: dict, round_sum: bool) -> Outputs:
    """vLLM's fused_add_rms_norm: h = x + residual is stored in the activation dtype; the norm
    (vLLM's cast placement: cast, then × w) reads the stored h, or (the defect, as vLLM's
    native IR path did) the unrounded fp32 sum."""
    x, residual, w = inputs["x"], inputs["residual"], inputs["weight"]
    h32 = x.float() + residual.float()
    h = h32.to(x.dtype)
    source = h.float() if round_sum else h32
    normalized = (source * _rsqrt_mean_square(source, inputs["eps"])).to(x.dtype)
    return {"y": normalized * w, "h": h}


def _fused_inputs(seed: int = 0, small: bool = False) -> dict:
    """vLLM's test_rms_norm with add_residual: x ~ N(0,1)/(2·hidden), residual ~ N(0, 1/(2·hidden)),
    weight ~ N(1, 0.1), bf16, eps 1e-6."""
    gen = _generator(seed)
    tokens, hidden = (83, 768) if small else (4096, 5120)
    scale = 1.0 / (2 * hidden)
    x = (torch.randn(tokens, hidden, generator=gen).bfloat16() * scale)
    residual = (torch.randn(tokens, hidden, generator=gen) * scale).bfloat16()
    return {"x": x, "residual": residual, "weight": _weight_near_one(hidden, torch.bfloat16, gen), "eps": 1e-6}


# ---- vLLM#56117: RMSNorm → fp8, per token ------------------------------------------------------
def _fp8_per_token(inputs: dict, through_bf16: bool) -> Outputs:
    """RMSNorm in fp32, then a per-token (row) scaled e4m3 cast. The unfused path vLLM's test
    compared against rounds the normalized output to bf16 first (forward_native, then the
    quant kernel): fp32 → bf16 → fp8 is double rounding, and the amax (hence the scale) is
    taken from the rounded values."""
    x, w = inputs["x"], inputs["weight"]
    x32 = x.float()
    y = x32 * _rsqrt_mean_square(x32, inputs["eps"]) * w.float()
    if through_bf16:
        y = y.to(torch.bfloat16).float()
    q, scale = scaled_fp8_cast(y, scaling="row", out_dtype=torch.float8_e4m3fn)
    return {"y": q, "scale": scale}


def _fp8_inputs(seed: int = 0, small: bool = False) -> dict:
    gen = _generator(seed)
    tokens, hidden = (64, 1027) if small else (2048, 1027)
    x = torch.randn(tokens, hidden, generator=gen).bfloat16()
    return {"x": x, "weight": _weight_near_one(hidden, torch.bfloat16, gen), "eps": 1e-6}


def _dequantized_close(outputs: Outputs, reference: Outputs) -> bool:
    """vLLM's dequantized fallback: allclose(q/s, q_ref/s_ref, rtol=5e-2, atol=5e-2)."""
    a = outputs["y"].float() / outputs["scale"]
    b = reference["y"].float() / reference["scale"]
    return bool(torch.allclose(a, b, rtol=5e-2, atol=5e-2))


# ---- pytorch#66707: LayerNorm computed in fp16 -----------------------------------------------
def _layer_norm_fp16_arithmetic(inputs: dict) -> Outputs:
    """Every step rounded to fp16: mean and variance as fp16 trees, fp16 centring and products."""
    x, w, b, eps = inputs["x"], inputs["weight"], inputs["bias"], inputs["eps"]
    d = x.shape[-1]
    mean = (tree_sum(x, torch.float16).float() / d).half()
    centred = (x.float() - mean.float()).half()
    variance = (tree_sum((centred.float() ** 2).half(), torch.float16).float() / d).half()
    scale = torch.rsqrt(variance.float() + eps).half()
    y = (centred.float() * scale.float()).half()
    return {"y": ((y.float() * w.float()).half().float() + b.float()).half()}


def _layer_norm_fp32_blocked(inputs: dict) -> Outputs:
    """A careful LayerNorm: two-pass statistics in fp32 summed in 8 partial sums (another order
    than torch's), one rounding at the end."""
    x, w, b, eps = inputs["x"], inputs["weight"], inputs["bias"], inputs["eps"]
    x32 = x.float()
    d = x.shape[-1]
    blocked = lambda v: v.reshape(*v.shape[:-1], 8, -1).sum(-1).sum(-1, keepdim=True)  # noqa: E731
    centred = x32 - blocked(x32) / d
    y = centred * torch.rsqrt(blocked(centred * centred) / d + eps)
    return {"y": (y * w.float() + b.float()).to(x.dtype)}


def _fp16_inputs(seed: int = 0, small: bool = False) -> dict:
    """The issue's repro: (1, 5, 128) of rand·0.1 in fp16, weight 1, bias 0, eps 1e-5 (small
    changes nothing: it is already small)."""
    gen = _generator(seed)
    x = (torch.rand(1, 5, 128, generator=gen) * 0.1).half()
    return {"x": x, "weight": torch.ones(128).half(), "bias": torch.zeros(128).half(), "eps": 1e-5}


def _torch_fp32_then_cast(inputs: dict) -> Outputs:
    x = inputs["x"]
    y = torch.nn.functional.layer_norm(x.float(), (x.shape[-1],), inputs["weight"].float(), inputs["bias"].float(),
                                       inputs["eps"])
    return {"y": y.to(x.dtype)}


def _equal(outputs: Outputs, reference: Outputs) -> bool:
    return bool(torch.equal(outputs["y"], reference["y"]))


# ---- pytorch#40308: one-pass variance at large |mean|/std ------------------------------------
def _layer_norm_one_pass(inputs: dict) -> Outputs:
    x, eps = inputs["x"].float(), inputs["eps"]
    mean = x.mean(-1, keepdim=True)
    variance = (x.pow(2).mean(-1, keepdim=True) - mean.pow(2)).clamp_min(0)
    return {"y": ((x - mean) * torch.rsqrt(variance + eps) * inputs["weight"] + inputs["bias"]).to(inputs["x"].dtype)}


def _layer_norm_two_pass(inputs: dict) -> Outputs:
    x, eps = inputs["x"].float(), inputs["eps"]
    centred = x - x.mean(-1, keepdim=True)
    y = centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps)
    return {"y": (y * inputs["weight"] + inputs["bias"]).to(inputs["x"].dtype)}


def _offset_inputs(seed: int = 0, small: bool = False) -> dict:
    """Rows of randn·0.01 + 100 in fp32 (|mean|/std = 1e4), as in the issue; 64 × 1024 is ours."""
    gen = _generator(seed)
    rows = 16 if small else 64
    x = torch.randn(rows, 1024, generator=gen) * 0.01 + 100
    return {"x": x, "weight": torch.ones(1024), "bias": torch.zeros(1024), "eps": 1e-5}


def _torch_layer_norm(inputs: dict) -> Outputs:
    x = inputs["x"]
    return {"y": torch.nn.functional.layer_norm(x, (x.shape[-1],), inputs["weight"], inputs["bias"], inputs["eps"])}


# ---- pytorch#141727: inductor vs eager rms_norm, both careful -------------------------------------
def _rms_norm_eager(inputs: dict) -> Outputs:
    x, w = inputs["x"], inputs["weight"]
    return {"y": torch.rms_norm(x.float(), (x.shape[-1],), w.float(), inputs["eps"]).to(torch.bfloat16)}


def _rms_norm_tiled(inputs: dict) -> Outputs:
    """What a compiler's tiled reduction does: Σx² in 16 partial fp32 sums, then combined."""
    x, w = inputs["x"], inputs["weight"]
    x32 = x.float()
    squares = x32.pow(2).reshape(*x.shape[:-1], 16, -1).sum(-1).sum(-1, keepdim=True)
    y = x32 * torch.rsqrt(squares / x.shape[-1] + inputs["eps"]) * w.float()
    return {"y": y.to(torch.bfloat16)}


def _tiled_inputs(seed: int = 0, small: bool = False) -> dict:
    """The issue's repro: x (2, 157, 4096) and the weight ~ N(0,1) in bf16, eps 1e-5."""
    gen = _generator(seed)
    x = torch.randn(1 if small else 2, 157, 4096, generator=gen).bfloat16()
    return {"x": x, "weight": torch.randn(4096, generator=gen).bfloat16(), "eps": 1e-5}


def _allclose_default(outputs: Outputs, reference: Outputs) -> bool:
    return bool(torch.allclose(outputs["y"], reference["y"]))


# ---- sglang#27540: Σx² in bf16 with massive activations -----------------------------------------
def _rms_sum_of_squares_bf16(inputs: dict) -> Outputs:
    """Σx² accumulated in bf16 (a tree), the rest in fp32: the bulk's squares vanish next to the
    massive activations' and the scale is off by a row-wide factor."""
    x, w = inputs["x"], inputs["weight"]
    x32 = x.float()
    mean_square = tree_sum((x32 * x32).bfloat16(), torch.bfloat16).float() / x.shape[-1]
    return {"y": (x32 * torch.rsqrt(mean_square + inputs["eps"]) * w.float()).to(x.dtype)}


def _outlier_inputs(seed: int = 0, small: bool = False) -> dict:
    """Rows of N(0,1) in bf16 with massive activations: 4 fixed channels at ±(1e3 … 1e4), as in
    the deep layers of large models; width 5376 (Gemma's), weight ~ N(1, 0.1)."""
    gen = _generator(seed)
    rows, n = (16 if small else 256), 5376
    x = torch.randn(rows, n, generator=gen)
    channels = torch.randperm(n, generator=gen)[:4]
    magnitude = 10.0 ** (3 + torch.rand(rows, 4, generator=gen))
    x[:, channels] = magnitude * torch.sign(torch.randn(rows, 4, generator=gen))
    return {"x": x.bfloat16(), "weight": _weight_near_one(n, torch.bfloat16, gen), "eps": 1e-6}


REGRESSIONS: dict[str, Regression] = {r.name: r for r in (
    Regression(
        "cast_before_weight", ("huggingface/transformers#33133", "NVIDIA/TransformerEngine#1132"),
        "RMSNorm rounds the normalized value to bf16 before multiplying by γ (HF's order) where the "
        "specification rounds once after (TE's): two roundings, ~1 ulp apart at many elements",
        "rmsnorm", careful=_rms_weight_in_fp32, defective=_rms_weight_after_cast,
        make_inputs=_cast_order_inputs(1024, 4096, 1e-5, "near_one"),
        anchor=Anchor("TransformerEngine", "assert_close(rtol=1.6e-2, atol=1e-5) (TE's bf16 dtype_tols) against "
                      "its fp32-then-cast reference", _rms_weight_in_fp32, _assert_close_passes(1.6e-2, 1e-5)),
        inputs_note="x (1024, 4096) ~ N(0,1) bf16 as in the TE thread (batch 1, seq 1024, hidden 4096), γ ~ N(1, 0.1) "
                    "bf16 (trained-like: with γ = 1 both orders agree), eps 1e-5"),
    Regression(
        "fp32_weight_multiply", ("sgl-project/sglang#22931", "sgl-project/sglang#22435"),
        "a fused RMSNorm multiplies by γ in fp32 and rounds once, where the model was trained with HF's "
        "cast-then-multiply: MMLU fell (0.72 → 0.64 on Llama-3.1-8B); atol = rtol = 1e-2 passed it",
        "rmsnorm", careful=_rms_weight_after_cast, defective=_rms_weight_in_fp32,
        make_inputs=_cast_order_inputs(8, 4096, 1e-6, "normal"),
        anchor=Anchor("sglang", "assert_close(atol=1e-2, rtol=1e-2) against the HF-order reference",
                      _rms_weight_after_cast, _assert_close_passes(1e-2, 1e-2)),
        inputs_note="x (8, 4096) ~ N(0,1) and γ ~ N(0,1) in bf16, eps 1e-6 (the PR's test)", semantics="llama"),
    Regression(
        "fused_add_unrounded_sum", ("vllm-project/vllm#52104",),
        "fused add + RMSNorm stores h = x + residual in bf16 but normalizes the unrounded fp32 sum: the "
        "norm reads a different h from the one the next layer gets (greedy tokens changed)",
        "add_rmsnorm", careful=lambda i: _fused_add(i, round_sum=True),
        defective=lambda i: _fused_add(i, round_sum=False), make_inputs=_fused_inputs,
        anchor=Anchor("vLLM", "assert_close(atol=1e-2, rtol=1e-2) on y and on h, against the other path",
                      lambda i: _fused_add(i, round_sum=True),
                      lambda o, r: _assert_close_passes(1e-2, 1e-2, "y")(o, r) and _assert_close_passes(1e-2, 1e-2, "h")(o, r)),
        inputs_note="4096 tokens × 5120 (vLLM's test grid), x and residual ~ N(0, 1)/(2·5120), γ ~ N(1, 0.1), bf16, "
                    "eps 1e-6; vLLM's cast placement (cast, then × γ), so semantics='llama'", semantics="llama"),
    Regression(
        "fp8_through_bf16", ("vllm-project/vllm#56117", "vllm-project/vllm#51393"),
        "RMSNorm → per-token fp8 through a bf16 intermediate (the unfused path vLLM's test used as its "
        "reference): double rounding and a scale from rounded values; the fused fp32 kernel flaked against it "
        "under rtol = atol = 5e-2 on dequantized values (one e4m3 step is 12.5 %)",
        "rmsnorm", careful=lambda i: _fp8_per_token(i, through_bf16=False),
        defective=lambda i: _fp8_per_token(i, through_bf16=True), make_inputs=_fp8_inputs,
        anchor=Anchor("vLLM", "allclose(q/s, q_ref/s_ref, rtol=5e-2, atol=5e-2) against the unfused bf16 path",
                      lambda i: _fp8_per_token(i, through_bf16=True), _dequantized_close),
        inputs_note="2048 × 1027 (the failing case of #51393) ~ N(0,1) bf16, γ ~ N(1, 0.1), eps 1e-6, e4m3fn, "
                    "per-token (row) scales in TE's convention", scaling="row"),
    Regression(
        "fp16_statistics", ("pytorch/pytorch#66707",),
        "LayerNorm of fp16 inputs computed in fp16 arithmetic instead of fp32-then-cast: 45 % of the "
        "elements differ (up to 13 % relative)",
        "layernorm", careful=_layer_norm_fp32_blocked, defective=_layer_norm_fp16_arithmetic,
        make_inputs=_fp16_inputs,
        anchor=Anchor("the issue's check", "torch.equal against layer_norm(x.float()).half()",
                      _torch_fp32_then_cast, _equal),
        inputs_note="x (1, 5, 128) = rand·0.1 in fp16, γ = 1, β = 0, eps 1e-5 (the issue's repro)"),
    Regression(
        "one_pass_variance", ("pytorch/pytorch#40308",),
        "variance as E[x²] − E[x]² in fp32 on rows of randn·0.01 + 100 (|mean|/std = 1e4): it cancels to "
        "zero and the output is garbage",
        "layernorm", careful=_layer_norm_two_pass, defective=_layer_norm_one_pass, make_inputs=_offset_inputs,
        anchor=Anchor("Liger LayerNorm test", "assert allclose(atol=1e-5, rtol=1e-5) in fp32 against torch's "
                      "LayerNorm (on the thread's inputs; Liger's own are N(0,1), which never cancel)",
                      _torch_layer_norm, lambda o, r: bool(torch.allclose(o["y"], r["y"], atol=1e-5, rtol=1e-5))),
        inputs_note="x (64, 1024) = randn·0.01 + 100 in fp32, γ = 1, β = 0, eps 1e-5"),
    Regression(
        "tiled_reduction", ("pytorch/pytorch#141727",),
        "torch.compile's rms_norm (a tiled Σx²) and eager differ by 0.0078 in bf16, both 0.0311 from fp64: "
        "no defect, and a suite comparing the two with allclose flags it",
        "rmsnorm", careful=_rms_norm_tiled, defective=None, make_inputs=_tiled_inputs,
        anchor=Anchor("compiled-vs-eager check", "torch.allclose (rtol 1e-5, atol 1e-8) against eager",
                      _rms_norm_eager, _allclose_default),
        inputs_note="x (2, 157, 4096) ~ N(0,1) and γ ~ N(0,1) in bf16, fp32 compute, eps 1e-5 (the issue's repro)"),
    Regression(
        "bf16_sum_of_squares_outliers", ("sgl-project/sglang#27540",),
        "RMSNorm accumulating Σx² in bf16 on rows with massive activations: the bulk's squares are lost "
        "next to the outliers' (Gemma-4's deep layers diverged from HF, cosine 0.51 by layer 58)",
        "rmsnorm", careful=_rms_weight_in_fp32, defective=_rms_sum_of_squares_bf16, make_inputs=_outlier_inputs,
        anchor=Anchor("sglang", "assert_close(atol=1e-2, rtol=1e-2) against the fp32 forward_native",
                      _rms_weight_in_fp32, _assert_close_passes(1e-2, 1e-2)),
        inputs_note="x (256, 5376) ~ N(0,1) bf16 with 4 channels at ±10^(3…4) in every row, γ ~ N(1, 0.1), eps 1e-6"),
)}
