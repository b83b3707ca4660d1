"""The cases of five peer suites, re-written: shapes, dtypes, modes and the tolerances they
apply (their "anchor"), and torch compositions with the same semantics for CPU runs.

Suites (read for shapes, dtypes and tolerances only; no code copied):
- Liger RMSNorm (test/transformers/test_rms_norm.py): (bs, sl, hd) in {(2,128,512), (5,123,123)},
  functional {(2,2,8), (9,7,41)}; fp32 (atol 1e-4, rtol 1e-6) and bf16 (atol 2e-1, rtol 2e-2,
  reruns=3); casting modes llama (offset 0), gemma (offset 1), none; in_place; weight ones
  (module init) or randn (functional); backward with randn gradients; eps 1e-6.
- Liger LayerNorm (test_layer_norm.py): {(2,8,64), (4,16,128), (1,1,1023), (3,7,256)}, fp32,
  atol = rtol = 1e-5; weight 1 / bias 0 (module init) or randn (functional); eps 1e-6.
- Liger fused add + RMSNorm (test_fused_add_rms_norm.py): the RMSNorm shapes and modes, with a
  residual; backward into both outputs (dh, dr).
- vLLM layernorm (tests/kernels/core/test_layernorm.py): tokens {7, 83, 4096} × hidden {8, 768,
  769, 5120, 5125, 8192}, fp16/bf16/fp32, with or without residual, x ~ N(0,1)/(2·hidden),
  weight ~ N(1, 0.1), eps 1e-6, atol = rtol = 1e-2; weightless; Gemma (1 + w); static fp8 quant
  with scale 0.01/1/10 (forward only).
- flash-attention layer norm (tests/ops/triton/test_layer_norm.py): 8 × 512 rows × hidden {192,
  2048, 2560, 3000, 4096}; (input, residual) dtypes (fp16,fp16), (fp16,fp32), (fp32,fp32),
  (bf16,bf16), (bf16,fp32); weight fp32/fp16/bf16; residual or not; LayerNorm or RMSNorm;
  eps 1e-6; rule |out − ref| ≤ 2·|pt − ref| + atol (atol 5e-2 bf16, 1e-2 fp16, 1e-4 fp32).
  Not re-written: dropout, rowscale, x1/weight1 and the prenorm backward through sigmoid(residual).

The CPU compositions compute in fp32 and round once (LayerNorm, Gemma, the fused add after its
rounded sum), or follow HF's cast-then-multiply for the llama modes (judged with
semantics="llama"); Liger's casting_mode "none" reference computes in the input dtype.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class PeerCase:
    suite: str
    shape: tuple[int, ...]
    dtype: str
    mode: str  # liger: llama | gemma | none; layernorm; vllm: plain | weightless | gemma | quant; fa: layernorm | rmsnorm
    residual: bool = False
    backward: bool = True
    weight_init: str = "ones"  # ones | randn | near_one
    residual_dtype: str | None = None
    weight_dtype: str | None = None
    eps: float = 1e-6
    full_grid_only: bool = False  # CI runs the representative cases, `slow` the full grid
    extra: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        parts = [self.mode, self.dtype, "x".join(map(str, self.shape))]
        if self.residual:
            parts.append(f"res-{self.residual_dtype or self.dtype}")
        elif self.residual_dtype and self.residual_dtype != self.dtype:
            parts.append(f"noresidual-{self.residual_dtype}")
        if self.weight_dtype and self.weight_dtype != self.dtype:
            parts.append(f"w-{self.weight_dtype}")
        parts += [f"{k}-{v}" for k, v in sorted(self.extra.items())]
        return "-".join(parts)

    @property
    def op(self) -> str:
        base = "layernorm" if self.mode == "layernorm" else "rmsnorm"
        return f"add_{base}" if self.residual else base


# ---- case lists ------------------------------------------------------------------------------
LIGER_RMS_SHAPES = [(2, 128, 512), (5, 123, 123)]
LIGER_FUNCTIONAL_SHAPES = [(2, 2, 8), (9, 7, 41)]


def liger_rms_norm_cases(residual: bool = False) -> list[PeerCase]:
    suite = "liger_fused_add_rms_norm" if residual else "liger_rms_norm"
    cases = []
    for shape, dtype, mode in itertools.product(LIGER_RMS_SHAPES, ("fp32", "bf16"), ("llama", "gemma", "none")):
        cases.append(PeerCase(suite, shape, dtype, mode, residual=residual, full_grid_only=shape != (5, 123, 123)))
    for shape, dtype, mode in itertools.product(LIGER_FUNCTIONAL_SHAPES, ("fp32", "bf16"), ("llama", "gemma")):
        cases.append(PeerCase(suite, shape, dtype, mode, residual=residual, weight_init="randn",
                              full_grid_only=shape == (2, 2, 8)))
    return cases


def liger_layer_norm_cases() -> list[PeerCase]:
    module = [PeerCase("liger_layer_norm", shape, "fp32", "layernorm", full_grid_only=shape != (1, 1, 1023))
              for shape in [(2, 8, 64), (4, 16, 128), (1, 1, 1023), (3, 7, 256)]]
    functional = [PeerCase("liger_layer_norm", shape, "fp32", "layernorm", weight_init="randn",
                           full_grid_only=shape != (4, 16, 128)) for shape in [(2, 8, 64), (4, 16, 128)]]
    return module + functional


def vllm_layernorm_cases() -> list[PeerCase]:
    cases = []
    representative = {(83, 768), (7, 5125), (83, 769)}
    for tokens, hidden, dtype, residual, mode in itertools.product(
            (7, 83, 4096), (8, 768, 769, 5120, 5125, 8192), ("fp16", "bf16", "fp32"), (False, True),
            ("plain", "weightless", "gemma")):
        rare = (tokens, hidden) not in representative or dtype == "fp16" and mode != "plain"
        cases.append(PeerCase("vllm_layernorm", (tokens, hidden), dtype, mode, residual=residual, backward=False,
                              weight_init="near_one", full_grid_only=rare))
    for tokens, hidden, dtype, quant_scale in itertools.product((7, 83, 4096), (8, 768, 5120), ("bf16", "fp16"),
                                                                (0.01, 1.0, 10.0)):
        cases.append(PeerCase("vllm_layernorm", (tokens, hidden), dtype, "quant", backward=False,
                              weight_init="near_one", extra={"quant_scale": quant_scale},
                              full_grid_only=(tokens, hidden) != (83, 768)))
    return cases


FLASH_DTYPES = [("fp16", "fp16"), ("fp16", "fp32"), ("fp32", "fp32"), ("bf16", "bf16"), ("bf16", "fp32")]


def flash_layer_norm_cases() -> list[PeerCase]:
    cases = []
    for hidden, (dtype, residual_dtype), weight_dtype, residual, mode in itertools.product(
            (192, 2048, 2560, 3000, 4096), FLASH_DTYPES, ("fp32", "fp16", "bf16"), (True, False),
            ("layernorm", "rmsnorm")):
        if weight_dtype == "fp16" and dtype == "bf16":
            continue  # not supported there either
        representative = hidden == 192 and weight_dtype == "fp32" and (dtype, residual_dtype, residual) in (
            ("bf16", "fp32", True), ("fp16", "fp16", False))
        cases.append(PeerCase("flash_layer_norm", (8 * 512, hidden), dtype, mode, residual=residual,
                              weight_init="randn", residual_dtype=residual_dtype, weight_dtype=weight_dtype,
                              full_grid_only=not representative))
    return cases


# ---- inputs --------------------------------------------------------------------------------
def make_inputs(case: PeerCase, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    dtype = DTYPES[case.dtype]
    n = case.shape[-1]
    w_dtype = DTYPES[case.weight_dtype or case.dtype]
    x = torch.randn(*case.shape, generator=gen)
    scale = 1.0 / (2 * n) if case.suite == "vllm_layernorm" else 1.0
    x = (x * scale).to(dtype)
    weight = {"ones": lambda: torch.ones(n), "randn": lambda: torch.randn(n, generator=gen),
              "near_one": lambda: 1.0 + 0.1 * torch.randn(n, generator=gen)}[case.weight_init]().to(w_dtype)
    if case.mode == "gemma" and case.suite == "vllm_layernorm":
        weight = (0.1 * torch.randn(n, generator=gen)).to(w_dtype)  # Gemma's w in (1 + w)
    inputs = {"x": x, "weight": None if case.mode == "weightless" else weight, "bias": None, "residual": None,
              "gy": None, "gh": None, "eps": case.eps}
    if case.mode == "layernorm":
        inputs["bias"] = (torch.randn(n, generator=gen) if case.weight_init == "randn" else torch.zeros(n)).to(w_dtype)
    if case.residual:
        residual = torch.randn(*case.shape, generator=gen) * scale
        inputs["residual"] = residual.to(DTYPES[case.residual_dtype or case.dtype])
    if case.backward:
        inputs["gy"] = torch.randn(*case.shape, generator=gen).to(dtype)
        if case.suite == "flash_layer_norm":
            inputs["gy"] = (inputs["gy"].float() / 8).to(dtype)  # g = randn / batch_size
        if case.residual and case.suite == "liger_fused_add_rms_norm":
            inputs["gh"] = torch.randn(*case.shape, generator=gen).to(dtype)
    return inputs


# ---- the careful CPU compositions ------------------------------------------------------------------
def _mean(v: torch.Tensor, tiled: bool) -> torch.Tensor:
    """Row mean; `tiled`: in 16 partial sums (another summation order, as a GPU kernel's)."""
    if not tiled:
        return v.mean(-1, keepdim=True)
    n = v.shape[-1]
    padded = torch.nn.functional.pad(v, (0, (-n) % 16))
    return padded.reshape(*v.shape[:-1], 16, -1).sum(-1).sum(-1, keepdim=True) / n


def _normalize(h32: torch.Tensor, mode: str, eps: float, tiled: bool = False) -> torch.Tensor:
    if mode == "layernorm":
        h32 = h32 - _mean(h32, tiled)
    return h32 * torch.rsqrt(_mean(h32.pow(2), tiled) + eps)


def norm_composition(case: PeerCase, h: torch.Tensor, weight, bias, eps: float, out_dtype,
                     tiled: bool = False) -> torch.Tensor:
    """The normalizer with the case's semantics on h (autograd-differentiable)."""
    mode = case.mode
    if mode == "none":  # Liger's BaseRMSNorm: every step in the input dtype
        return weight * (h * torch.rsqrt(_mean(h.pow(2), tiled) + eps)).to(h.dtype)
    n = _normalize(h.float(), "layernorm" if mode == "layernorm" else "rmsnorm", eps, tiled)
    if mode == "llama" or (case.suite == "vllm_layernorm" and mode == "plain"):
        n = n.to(h.dtype)  # HF's (and vLLM's) cast before the weight
        return n if weight is None else weight * n
    if mode == "gemma":
        return (n * (1.0 + weight.float())).to(out_dtype)
    y = n if weight is None else n * weight.float()
    return (y if bias is None else y + bias.float()).to(out_dtype)


def careful_outputs(case: PeerCase, inputs: dict, tiled: bool = False) -> dict:
    """Run the CPU composition (forward, and backward as the suite does) -> comparator outputs.
    `tiled`: the same semantics with another summation order (a stand-in for a GPU kernel)."""
    leaves = {k: inputs[k].clone().requires_grad_(case.backward) if inputs[k] is not None else None
              for k in ("x", "weight", "bias", "residual")}
    x, residual = leaves["x"], leaves["residual"]
    h = x if residual is None else (x.float() + residual.float()).to(residual.dtype if case.suite == "flash_layer_norm"
                                                                         else x.dtype)
    if case.mode == "quant":
        return _static_fp8(case, h, inputs, tiled)
    y = norm_composition(case, h, leaves["weight"], leaves["bias"], inputs["eps"], x.dtype, tiled)
    outputs = {"y": y.detach()}
    if residual is not None:
        outputs["h"] = h.detach()
    if case.backward:
        grads = [inputs["gy"]] + ([inputs["gh"]] if inputs["gh"] is not None else [])
        torch.autograd.backward([y] + ([h] if inputs["gh"] is not None else []), grads)
        outputs["gx"] = x.grad
        if leaves["weight"] is not None:
            outputs["gw"] = leaves["weight"].grad
        if leaves["bias"] is not None:
            outputs["gb"] = leaves["bias"].grad
    return outputs


def _static_fp8(case: PeerCase, h: torch.Tensor, inputs: dict, tiled: bool = False) -> dict:
    """vLLM's rms_norm_static_fp8_quant: y / quant_scale cast to e4m3 (saturating); as TE's
    convention s = 1 / quant_scale (the comparator's scale)."""
    h32 = h.detach().float()
    y = _normalize(h32, "rmsnorm", inputs["eps"], tiled) * inputs["weight"].float()
    s = torch.tensor(1.0 / case.extra["quant_scale"], dtype=torch.float32)
    fmax = torch.finfo(torch.float8_e4m3fn).max
    q = torch.clamp(y * s, -fmax, fmax).to(torch.float8_e4m3fn)
    return {"y": q, "scale": s}


def judge_kwargs(case: PeerCase, inputs: dict) -> dict:
    """assert_close_to_exact's keywords for this case (besides actual)."""
    affine = None
    if case.mode == "gemma":
        affine = "offset_weight"
    semantics = "llama" if case.mode == "llama" or (case.suite == "vllm_layernorm" and case.mode == "plain") else "exact"
    kwargs = dict(op=case.op, x=inputs["x"], weight=inputs["weight"], bias=inputs["bias"], residual=inputs["residual"],
                  eps=inputs["eps"], affine=affine, semantics=semantics)
    if case.backward:
        kwargs["gy"] = inputs["gy"]
        if inputs["gh"] is not None:
            kwargs["gh"] = inputs["gh"]
    return kwargs


def expected_to_fail(case: PeerCase) -> str | None:
    """Cases whose careful-looking composition is not careful: the comparator must fail them."""
    if case.mode == "none" and case.dtype != "fp32":
        return ("Liger's casting_mode='none' reference computes in bf16 (variance, rsqrt and products rounded to "
                "bf16): outside the default bound by up to ~2x in y and far more in gx")
    return None


# ---- the anchors: each suite's own check of a kernel against its reference ---------------------------
LIGER_TOLERANCES = {"fp32": (1e-4, 1e-6), "bf16": (2e-1, 2e-2)}  # (atol, rtol)
FLASH_ATOL = {"bf16": 5e-2, "fp16": 1e-2, "fp32": 1e-4}


def _allclose_all(kernel: dict, reference: dict, atol: float, rtol: float) -> bool:
    return all(torch.allclose(kernel[k].float(), reference[k].float(), atol=atol, rtol=rtol)
               for k in kernel if k != "scale")


def anchor_passes(case: PeerCase, inputs: dict, kernel: dict) -> bool:
    """Would the suite's own tolerance pass `kernel` against the suite's reference (the plain
    composition)? Liger: allclose with its (atol, rtol) per dtype; vLLM: assert_close with
    atol = rtol = 1e-2 (fp8: 1e-3 on the dequantized codes); flash-attention: |out − ref| ≤
    2·|pt − ref| + atol with ref computed in fp32 and pt the plain composition."""
    reference = careful_outputs(case, inputs)
    if case.suite.startswith("liger"):
        atol, rtol = (1e-5, 1e-5) if case.suite == "liger_layer_norm" else LIGER_TOLERANCES[case.dtype]
        return _allclose_all(kernel, reference, atol, rtol)
    if case.suite == "vllm_layernorm":
        tolerance = 1e-3 if case.mode == "quant" else 1e-2
        return _allclose_all(kernel, reference, tolerance, tolerance)
    upcast = {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
    fp32 = careful_outputs(PeerCase(case.suite, case.shape, "fp32", case.mode, case.residual, case.backward,
                                    case.weight_init, "fp32", "fp32", case.eps), upcast)
    atol = FLASH_ATOL[min((case.dtype, case.residual_dtype or case.dtype, case.weight_dtype or case.dtype),
                          key=lambda d: {"bf16": 0, "fp16": 1, "fp32": 2}[d])]
    for key in kernel:
        out, pt, ref = kernel[key].float(), reference[key].float(), fp32[key].float()
        if (out - ref).abs().max() > 2 * (pt - ref).abs().max() + atol:
            return False
    return True


# ---- running a case -----------------------------------------------------------------------------
def judge_case(case: PeerCase, seed: int, kernel_outputs=None):
    """Inputs for `seed`, the kernel's outputs (default: the tiled CPU composition) and the
    comparator's verdict; AssertionError when the comparator finds a violation."""
    from normtheory.testing import assert_close_to_exact

    inputs = make_inputs(case, seed)
    outputs = careful_outputs(case, inputs, tiled=True) if kernel_outputs is None else kernel_outputs(case, inputs)
    return assert_close_to_exact(outputs, **judge_kwargs(case, inputs), msg=f"{case.suite} {case.id} seed {seed}")


def run_suite_case(case: PeerCase, seed: int = 0, kernel_outputs=None) -> None:
    """What each peer test does: the careful kernel passes; a composition that is not careful
    (expected_to_fail) must be caught."""
    reason = expected_to_fail(case) if kernel_outputs is None else None
    if reason is None:
        judge_case(case, seed, kernel_outputs)
        return
    import pytest

    with pytest.raises(AssertionError):
        judge_case(case, seed, kernel_outputs)


def split(cases: list[PeerCase]):
    """pytest params: representative cases in CI, the rest marked slow."""
    import pytest

    return [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.full_grid_only else []) for c in cases]
