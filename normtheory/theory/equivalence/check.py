"""Inference and gradient equivalence of a Pre-LN model and its converted form, with bounds.

The original always runs as given (for GPT-2: the untouched HF model, cast to the working
dtype). Inference: the converted parameters are computed once in fp64 and then rounded to the
working dtype (how a converted checkpoint is deployed). Gradients: the conversion runs inside
the forward in the working dtype (the paper's training graph), and the gradients with respect
to the ORIGINAL parameters are compared with those of the original model.

The tolerance is the bound of `equivalence/bound.py`, fed with the error model of
`equivalence/noise.py` evaluated on the reference decoder that carries the subject's function.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from normtheory.theory.equivalence.bound import tail_factor
from normtheory.theory.equivalence.convert import convert_state, converted_reference_config
from normtheory.theory.equivalence.models import ExactOps, PreNormDecoder
from normtheory.theory.equivalence.noise import NoiseOps
from normtheory.theory.equivalence.subjects import Params, Subject, with_zero_head_bias

DTYPES = {"fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16}
FP64_RELATIVE_REQUIREMENT = 1e-12  # the fp64 target, checked beside the derived bound


@dataclass
class Comparison:
    name: str
    diff_norm: float  # ‖D‖₂
    reference_norm: float  # ‖original's output‖₂
    max_abs_relative: float  # ‖D‖∞ / ‖original's output‖∞
    bound: float  # bound on ‖D‖₂
    typical: float = float("nan")  # sqrt(Ŝ_a + Ŝ_b): the error model's rms ‖D‖₂

    @property
    def ratio(self) -> float:
        return self.diff_norm / self.bound if self.bound > 0 else (0.0 if self.diff_norm == 0 else float("inf"))

    @property
    def ok(self) -> bool:
        return self.diff_norm <= self.bound

    @property
    def mde(self) -> float:
        """The smallest ‖δ‖₂ of a deterministic error δ (a wrong conversion) that this check
        detects with probability >= 80%: ‖δ + D‖ >= ‖δ‖ - ‖D‖ exceeds the bound once ‖δ‖ >=
        bound + q, where ‖D‖ <= q with probability 80% (the single-direction worst case of
        bound.py: q = z_0.8·sqrt(S_a + S_b) with z_0.8 the two-sided 80% normal quantile
        1.2816). Without an error model (typical unknown) the bound itself."""
        q = 1.2816 * self.typical if self.typical == self.typical else 0.0
        return self.bound + q

    @property
    def mde_relative(self) -> float:
        return self.mde / self.reference_norm if self.reference_norm > 0 else float("inf")


@dataclass
class Report:
    check: str
    model: str
    target: str
    dtype: str
    samples: int
    comparisons: list[Comparison] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        ok = all(c.ok for c in self.comparisons)
        if self.dtype == "fp64" and self.check != "training":
            ok = ok and self.relative_difference <= FP64_RELATIVE_REQUIREMENT
        return ok

    @property
    def relative_difference(self) -> float:
        """‖D‖₂ / ‖original's output‖₂ over everything compared (all logits; the whole gradient
        vector). The issue's fp64 target (≤ 1e-12) is read normwise like this: a single gradient
        tensor can be tiny by cancellation (LN at d = 2), and its own relative error is then
        large in every precision; the per-tensor test is the derived bound."""
        diff = sum(c.diff_norm**2 for c in self.comparisons) ** 0.5
        ref = sum(c.reference_norm**2 for c in self.comparisons) ** 0.5
        return diff / ref if ref > 0 else (0.0 if diff == 0 else float("inf"))

    @property
    def verdict(self) -> str:
        """HOLDS (equal within the derived bound) or REFUTED; what the check cannot see is
        `mde_relative`."""
        return "HOLDS" if self.passed else "REFUTED"

    @property
    def mde_relative(self) -> float:
        """The smallest relative error ‖δ‖/‖y‖ of one compared tensor that the check detects
        with probability 80% (the most sensitive tensor)."""
        return min(c.mde_relative for c in self.comparisons)

    @property
    def worst(self) -> Comparison:
        return max(self.comparisons, key=lambda c: c.ratio)

    @property
    def worst_relative(self) -> float:
        return max(c.max_abs_relative for c in self.comparisons)

    def to_json(self) -> dict:
        out = asdict(self)
        out["passed"] = self.passed
        out["verdict"] = self.verdict
        out["relative_difference"] = self.relative_difference
        out["mde_relative"] = self.mde_relative
        for c, raw in zip(self.comparisons, out["comparisons"]):
            raw["ratio"], raw["ok"], raw["mde"], raw["mde_relative"] = c.ratio, c.ok, c.mde, c.mde_relative
        return out


def make_batch(vocab: int, batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=gen), torch.randint(0, vocab, (batch, length), generator=gen)


def loss_of(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # in fp64 for every dtype: the loss is not part of the model whose equivalence is checked
    return F.cross_entropy(logits.double().reshape(-1, logits.shape[-1]), labels.reshape(-1))


def compare(name: str, original: torch.Tensor, other: torch.Tensor, bound: float,
            typical: float = float("nan")) -> Comparison:
    a, b = original.detach().double(), other.detach().double()
    diff = b - a
    return Comparison(
        name,
        diff.norm().item(),
        a.norm().item(),
        (diff.abs().max() / a.abs().max().clamp_min(1e-300)).item(),
        bound,
        typical,
    )


def _module_in(module, dtype, device="cpu"):
    return copy.deepcopy(module).to(device=device, dtype=dtype).eval()


def _grad(param: torch.Tensor, name: str) -> torch.Tensor:
    """The gradient that backward() left on `param`."""
    if param.grad is None:
        raise RuntimeError(f"{name} has no gradient: the loss does not depend on it")
    return param.grad


def _cast(params: Params, dtype, grad: bool = False, device="cpu") -> Params:
    return {k: v.detach().to(device=device, dtype=dtype).clone().requires_grad_(grad) for k, v in params.items()}


# ------------------------------------------------------------------ error model samples


class _NoisyReference:
    """The subject's reference decoder run under the rounding-error model of one format."""

    def __init__(self, subject: Subject, target: str, fmt: str, seed: int):
        self.subject, self.target = subject, target
        self.ops = NoiseOps(fmt, torch.Generator().manual_seed(seed))
        self.original = copy.deepcopy(subject.reference).double()
        self.converted = PreNormDecoder(converted_reference_config(subject.reference.cfg, target)).double().eval()
        self.theta = {k: v.detach().double() for k, v in self.original.named_parameters()}

    def _run(self, module, params, idx, noisy):
        module.ops = self.ops if noisy else ExactOps()
        try:
            return torch.func.functional_call(module, params, (idx,), tie_weights=True)
        finally:
            module.ops = ExactOps()

    def _stored(self, params, noisy):
        return {k: self.ops.store(v) for k, v in params.items()} if noisy else dict(params)

    def original_logits(self, theta, idx, noisy):
        return self._run(self.original, self._stored(theta, noisy), idx, noisy)

    def deployed_logits(self, idx, noisy):
        """Converted once in fp64, then rounded to the working format."""
        with torch.no_grad():
            state = convert_state(self.theta, self.subject.reference_anatomy, self.target)
        return self._run(self.converted, self._stored(state, noisy), idx, noisy)

    def in_forward_logits(self, theta, idx, noisy):
        """The conversion computed in the working format inside the forward."""
        state = convert_state(self._stored(theta, noisy), self.subject.reference_anatomy, self.target)
        return self._run(self.converted, self._stored(state, noisy), idx, noisy)

    def grads(self, which: str, idx, labels, noisy) -> dict[str, torch.Tensor]:
        theta = _cast(self.theta, torch.float64, grad=True)
        logits = (self.original_logits if which == "original" else self.in_forward_logits)(theta, idx, noisy)
        loss_of(logits, labels).backward()
        return {self.subject.to_original_name(k): _grad(v, k) for k, v in theta.items()}

    def second_moments(self, fn, clean, samples: int) -> dict[str, float]:
        """Ŝ per output name: mean over samples of ‖noisy − clean‖², in the real format's units."""
        total = {k: 0.0 for k in clean}
        for _ in range(samples):
            noisy = fn()
            for k in clean:
                total[k] += ((noisy[k] - clean[k]).double().norm().item() / self.ops.amplification) ** 2
        return {k: v / samples for k, v in total.items()}


# ------------------------------------------------------------------ the checks


def inference_check(subject: Subject, target: str, fmt: str, idx: torch.Tensor, *, samples: int = 32,
                    seed: int = 0, skip_recentre: frozenset[str] = frozenset(), device: str = "cpu") -> Report:
    """Logits of the original and of the converted model (converted in fp64, run in `fmt`)."""
    dtype = DTYPES[fmt]
    theta = subject.params()
    with torch.no_grad():
        converted = convert_state(theta, subject.anatomy, target, skip_recentre=skip_recentre)
        skeleton = subject.skeleton(target)
        with_zero_head_bias(converted, skeleton)
        on = idx.to(device)
        original = subject.logits(_module_in(subject.original, dtype, device), _cast(theta, dtype, False, device), on).cpu()
        other = subject.logits(_module_in(skeleton, dtype, device), _cast(converted, dtype, False, device), on).cpu()
        model = _NoisyReference(subject, target, fmt, seed)
        clean_a = {"logits": model.original_logits(model.theta, idx, False)}
        clean_b = {"logits": model.deployed_logits(idx, False)}
        s_a = model.second_moments(lambda: {"logits": model.original_logits(model.theta, idx, True)}, clean_a, samples)
        s_b = model.second_moments(lambda: {"logits": model.deployed_logits(idx, True)}, clean_b, samples)
    typical = (s_a["logits"] + s_b["logits"]) ** 0.5
    report = Report("inference", subject.name, target, fmt, samples)
    report.comparisons.append(compare("logits", original, other, tail_factor(samples) * typical, typical))
    return report


def gradient_check(subject: Subject, target: str, fmt: str, idx, labels, *, samples: int = 32, seed: int = 0,
                   skip_recentre: frozenset[str] = frozenset(), device: str = "cpu") -> Report:
    """∂loss/∂θ of the original graph and of the converted graph (conversion inside the forward)."""
    dtype = DTYPES[fmt]
    theta_a, theta_b = (_cast(subject.params(), dtype, True, device) for _ in range(2))
    on_idx, on_labels = idx.to(device), labels.to(device)
    loss_of(subject.logits(_module_in(subject.original, dtype, device), theta_a, on_idx), on_labels).backward()
    skeleton = _module_in(subject.skeleton(target), dtype, device)
    converted_logits = subject.converted_logits(target, skeleton, theta_b, on_idx, skip_recentre=skip_recentre)
    loss_of(converted_logits, on_labels).backward()
    model = _NoisyReference(subject, target, fmt, seed)
    clean_a, clean_b = model.grads("original", idx, labels, False), model.grads("in_forward", idx, labels, False)
    s_a = model.second_moments(lambda: model.grads("original", idx, labels, True), clean_a, samples)
    s_b = model.second_moments(lambda: model.grads("in_forward", idx, labels, True), clean_b, samples)
    factor = tail_factor(samples)
    report = Report("gradients", subject.name, target, fmt, samples)
    for name in theta_a:
        typical = (s_a[name] + s_b[name]) ** 0.5
        report.comparisons.append(compare(f"grad {name}", _grad(theta_a[name], name).cpu(),
                                          _grad(theta_b[name], name).cpu(), factor * typical, typical))
    return report
