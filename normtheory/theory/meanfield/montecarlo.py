"""Monte Carlo harness: real torch Transformer stacks at initialisation, seeds batched.

Two setups (see THEORY_NOTES.md, Xiong et al. 2020):

* ``xiong`` — the proof's setup: W^Q = W^K = 0, so attention is the uniform average over
  tokens; W^V, W^1, W^2 are d x d with Xavier N(0, 1/d) entries; no output projection, no
  biases; normalisers without eps and without affine parameters; ReLU FFN.
* ``standard`` — softmax attention with d/64 heads (``F.scaled_dot_product_attention``),
  W^Q, W^K, W^V, W^O d x d and an FFN d -> 4d -> d, all Xavier-normal, zero biases,
  LayerNorm eps 1e-5 (RMSNorm 1e-6) with identity affine parameters (not recorded).

Architectures: ``post_ln``, ``pre_ln``, ``peri_ln`` (normalise the input and the output of
each sublayer), ``lns`` (Pre-LN with every LN output of block l scaled by 1/sqrt(l),
Sun et al. 2025), ``pre_rms`` (Pre-LN with RMSNorm) and ``pre_lp:P`` (Pre-LN with the Lp
normaliser of exponent P >= 1 or inf, eps as RMSNorm's; normtheory.kernels.lp's stable kernel,
see theory/lp/depth.py). Pre-style stacks end in a final normaliser; Post-LN ends in its last
block's LN.

Loss: L = (1/n) sum_i <u_i, out_i> with u_i ~ N(0, I_d) drawn once per seed. Its gradient
at the output is known in closed form (u_i / n), which is what lets meanfield.py predict
the last layer's weight gradient without any fitted constant.

Depths share weights: the depth-L model is the first L blocks of the deepest one (weights
are drawn layer by layer from one generator per seed), so one forward pass serves every
depth and each depth gets its own loss and backward pass. Points at different depths are
then positively correlated, which makes independent-error intervals on slopes conservative.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

ARCHS = ("post_ln", "pre_ln", "peri_ln", "lns", "pre_rms")
LP_ARCH_PREFIX = "pre_lp:"


def lp_arch(p: float) -> str:
    """The arch name of a Pre-Lp stack: pre_lp:1.5, pre_lp:inf, ..."""
    return LP_ARCH_PREFIX + ("inf" if math.isinf(p) else f"{float(p):g}")


def lp_exponent(arch: str) -> float | None:
    """p of a pre_lp:P arch, None for every other arch (ValueError for a bad P)."""
    if not arch.startswith(LP_ARCH_PREFIX):
        return None
    p = float(arch[len(LP_ARCH_PREFIX):])
    if not p >= 1:
        raise ValueError(f"{arch!r}: p must be >= 1 or inf")
    return p


def _check_arch(arch: str) -> None:
    if arch not in ARCHS and lp_exponent(arch) is None:
        raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS} or {LP_ARCH_PREFIX}P")
SETUPS = ("xiong", "standard")
ACTIVATIONS = ("relu", "gelu")

HEAD_DIM = 64


@dataclass(frozen=True)
class StackConfig:
    """Everything that defines one family of random models (all depths up to max(depths))."""

    setup: str
    d: int
    depths: tuple[int, ...]
    n_tokens: int = 16
    activation: str = "relu"

    def __post_init__(self):
        if self.setup not in SETUPS:
            raise ValueError(f"unknown setup {self.setup!r}; expected one of {SETUPS}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}")
        if self.setup == "xiong" and self.activation != "relu":
            raise ValueError("the xiong setup uses ReLU (its Lemma 1 is about ReLU)")
        if self.d < 4:
            raise ValueError("d must be at least 4 (LayerNorm without eps is constant at d = 2)")
        if not self.depths or min(self.depths) < 1:
            raise ValueError("depths must be positive integers")
        if self.n_tokens < 2:
            raise ValueError("n_tokens must be at least 2")

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def d_ff(self) -> int:
        return self.d if self.setup == "xiong" else 4 * self.d

    @property
    def n_heads(self) -> int:
        return max(1, self.d // HEAD_DIM)

    def eps(self, arch: str) -> float:
        if self.setup == "xiong":
            return 0.0
        return 1e-6 if arch == "pre_rms" or arch.startswith(LP_ARCH_PREFIX) else 1e-5

    def weight_shapes(self) -> dict[str, tuple[int, int]]:
        d, f = self.d, self.d_ff
        if self.setup == "xiong":
            return {"wv": (d, d), "w1": (d, f), "w2": (f, d)}
        return {"wq": (d, d), "wk": (d, d), "wv": (d, d), "wo": (d, d), "w1": (d, f), "w2": (f, d)}


def xavier_normal_var(fan_in: int, fan_out: int) -> float:
    """Glorot & Bengio's normal initialisation: Var = 2 / (fan_in + fan_out)."""
    return 2.0 / (fan_in + fan_out)


def seed_key(seed: int, cfg: StackConfig) -> int:
    """One generator seed per (seed, setup, d, n): independent of chunking and of depths."""
    mixed = np.random.SeedSequence([int(seed), SETUPS.index(cfg.setup), cfg.d, cfg.n_tokens])
    return int(mixed.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


# ---------------------------------------------------------------- weights and inputs


@dataclass
class RandomStack:
    """Weights (per layer: name -> tensor (S, in, out)), inputs h0 (S, n, d), readout u."""

    layers: list[dict[str, torch.Tensor]]
    h0: torch.Tensor
    u: torch.Tensor


def draw_stack(cfg: StackConfig, seeds: Sequence[int], device: str, dtype=torch.float32) -> RandomStack:
    shapes = cfg.weight_shapes()
    S, n, d = len(seeds), cfg.n_tokens, cfg.d
    h0 = torch.empty(S, n, d, device=device, dtype=dtype)
    u = torch.empty(S, n, d, device=device, dtype=dtype)
    layers = [
        {name: torch.empty(S, *shape, device=device, dtype=dtype) for name, shape in shapes.items()}
        for _ in range(cfg.max_depth)
    ]
    for s, seed in enumerate(seeds):
        gen = torch.Generator(device=device).manual_seed(seed_key(seed, cfg))
        # Order matters for reproducibility: inputs first, then layer by layer, so that the
        # depth-L model is a prefix of every deeper one.
        h0[s].normal_(generator=gen)
        u[s].normal_(generator=gen)
        for layer in layers:
            for name, (fan_in, fan_out) in shapes.items():
                layer[name][s].normal_(std=math.sqrt(xavier_normal_var(fan_in, fan_out)), generator=gen)
    for layer in layers:
        for w in layer.values():
            w.requires_grad_(True)
    return RandomStack(layers, h0, u)


# ---------------------------------------------------------------- building blocks


def _normalise(x: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    if kind.startswith(LP_ARCH_PREFIX):
        from normtheory.kernels.lp import lp_norm_stable

        return lp_norm_stable(x, None, None, eps, lp_exponent(kind))
    if kind == "rms":
        return F.rms_norm(x, (x.shape[-1],), eps=eps)
    return F.layer_norm(x, (x.shape[-1],), eps=eps)


def uniform_attention(x: torch.Tensor, wv: torch.Tensor) -> torch.Tensor:
    """Attention with W^Q = W^K = 0: softmax of zeros is uniform, so every token gets the mean
    of the values. (tests check this equals softmax attention with zero W^Q, W^K.)"""
    v = torch.bmm(x, wv)
    return v.mean(dim=1, keepdim=True).expand_as(v)


def softmax_attention(x: torch.Tensor, w: dict[str, torch.Tensor], n_heads: int) -> torch.Tensor:
    S, n, d = x.shape
    def heads(t):
        return t.view(S, n, n_heads, d // n_heads).transpose(1, 2)
    q, k, v = (heads(torch.bmm(x, w[name])) for name in ("wq", "wk", "wv"))
    out = F.scaled_dot_product_attention(q, k, v)
    return torch.bmm(out.transpose(1, 2).reshape(S, n, d), w["wo"])


@dataclass
class ForwardTrace:
    """Per-layer tensors kept for measurement; lists indexed by block (0-based)."""

    hidden: list[torch.Tensor] = field(default_factory=list)  # h_0 .. h_L, shape (S, n, d)
    activation_ms: list[torch.Tensor] = field(default_factory=list)  # (S,) mean ||act||^2 / d_ff
    residual_sum_ms: list[torch.Tensor] = field(default_factory=list)  # post_ln: x + FFN(x), (S,)
    attention_sum_ms: list[torch.Tensor] = field(default_factory=list)  # post_ln: x + Attn(x), (S,)


def _sum_of_squares(t: torch.Tensor, dims) -> torch.Tensor:
    """Sum of squares over dims. torch's fp32 norm reduces in blocks (relative error ~1e-6 at
    these sizes, far below the Monte Carlo error) and is 20x faster than a float64 copy."""
    return torch.linalg.vector_norm(t.detach(), dim=dims).double().square()


def _mean_square(t: torch.Tensor) -> torch.Tensor:
    """Per seed: mean over tokens of ||t_i||^2 / width."""
    return _sum_of_squares(t, (-1, -2)) / (t.shape[-1] * t.shape[-2])


def forward_stack(arch: str, cfg: StackConfig, stack: RandomStack) -> ForwardTrace:
    """Run the deepest model once, keeping every hidden state (with its autograd graph)."""
    _check_arch(arch)
    eps = cfg.eps(arch)
    norm_kind = _norm_kind(arch)
    act = F.relu if cfg.activation == "relu" else F.gelu

    def attention(x, w):
        if cfg.setup == "xiong":
            return uniform_attention(x, w["wv"])
        return softmax_attention(x, w, cfg.n_heads)

    trace = ForwardTrace()

    def ffn(x, w):
        a = act(torch.bmm(x, w["w1"]))
        trace.activation_ms.append(_mean_square(a))
        return torch.bmm(a, w["w2"])

    h = stack.h0
    trace.hidden.append(h)
    for index, w in enumerate(stack.layers):
        layer_number = index + 1
        if arch == "post_ln":
            s = h + attention(h, w)
            trace.attention_sum_ms.append(_mean_square(s))
            h = _normalise(s, "ln", eps)
            s = h + ffn(h, w)
            trace.residual_sum_ms.append(_mean_square(s))
            h = _normalise(s, "ln", eps)
        elif arch == "peri_ln":
            h = h + _normalise(attention(_normalise(h, "ln", eps), w), "ln", eps)
            h = h + _normalise(ffn(_normalise(h, "ln", eps), w), "ln", eps)
        else:  # pre_ln, pre_rms, lns, pre_lp:P
            scale = 1.0 / math.sqrt(layer_number) if arch == "lns" else 1.0
            h = h + attention(_normalise(h, norm_kind, eps) * scale, w)
            h = h + ffn(_normalise(h, norm_kind, eps) * scale, w)
        trace.hidden.append(h)
    return trace


def model_output(arch: str, cfg: StackConfig, h_last: torch.Tensor) -> torch.Tensor:
    if arch == "post_ln":
        return h_last  # already the output of the last block's LN
    return _normalise(h_last, _norm_kind(arch), cfg.eps(arch))


def _norm_kind(arch: str) -> str:
    if arch == "pre_rms":
        return "rms"
    return arch if lp_exponent(arch) is not None else "ln"


# ---------------------------------------------------------------- measurement


def measure_chunk(arch: str, cfg: StackConfig, stack: RandomStack) -> dict:
    """Forward once, then one loss and one backward pass per depth. Returns numpy arrays with
    a leading seed axis."""
    trace = forward_stack(arch, cfg, stack)
    out: dict = {
        "hidden_ms": torch.stack([_mean_square(h) for h in trace.hidden], dim=1).cpu().numpy(),
        "hidden_centered_ms": torch.stack(
            [_mean_square(h - h.mean(dim=-1, keepdim=True)) for h in trace.hidden], dim=1
        ).cpu().numpy(),
        "activation_ms": torch.stack(trace.activation_ms, dim=1).cpu().numpy(),
    }
    if arch == "post_ln":
        out["residual_sum_ms"] = torch.stack(trace.residual_sum_ms, dim=1).cpu().numpy()
        out["attention_sum_ms"] = torch.stack(trace.attention_sum_ms, dim=1).cpu().numpy()
    names = list(stack.layers[0])
    per_depth = {}
    for depth in cfg.depths:
        y = model_output(arch, cfg, trace.hidden[depth])
        # Seeds are independent models: summing their losses gives each its own gradient.
        loss = (stack.u * y).sum(dim=-1).mean(dim=-1).sum()
        weights = [layer[name] for layer in stack.layers[:depth] for name in names]
        hidden = trace.hidden[1 : depth + 1]
        grads = torch.autograd.grad(loss, weights + hidden, retain_graph=True)
        wgrads, hgrads = grads[: len(weights)], grads[len(weights) :]
        grad_sq = {}
        for j, name in enumerate(names):
            per_layer = [_sum_of_squares(wgrads[i * len(names) + j], (-2, -1)) for i in range(depth)]
            grad_sq[name] = torch.stack(per_layer, dim=1).cpu().numpy()
        grad_sq["hidden"] = torch.stack([_sum_of_squares(g, (-1, -2)) / g.shape[-2] for g in hgrads], dim=1).cpu().numpy()
        per_depth[depth] = grad_sq
        del grads, wgrads, hgrads
    out["grad_sq"] = per_depth
    return out


def chunk_size(cfg: StackConfig, memory_budget_bytes: float) -> int:
    """Seeds per chunk: weights + one set of weight gradients, fp32, must fit the budget."""
    per_seed = 2 * 4 * cfg.max_depth * sum(a * b for a, b in cfg.weight_shapes().values())
    return max(1, int(memory_budget_bytes // max(per_seed, 1)))


def _concat(parts: list[dict]) -> dict:
    first = parts[0]
    merged = {}
    for key, value in first.items():
        if isinstance(value, dict):
            merged[key] = _concat([p[key] for p in parts])
        else:
            merged[key] = np.concatenate([p[key] for p in parts], axis=0)
    return merged


def measure(
    archs: Iterable[str],
    cfg: StackConfig,
    seeds: Sequence[int],
    device: str = "cpu",
    memory_budget_bytes: float = 4e9,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """Measure every arch on the same random weights (common random numbers across archs).

    Returns {arch: {"hidden_ms": (S, Lmax+1), ..., "grad_sq": {L: {name: (S, L)}}}}.
    """
    archs = list(archs)
    per_chunk = chunk_size(cfg, memory_budget_bytes)
    results: dict[str, list[dict]] = {a: [] for a in archs}
    for start in range(0, len(seeds), per_chunk):
        chunk = list(seeds[start : start + per_chunk])
        stack = draw_stack(cfg, chunk, device)
        for arch in archs:
            results[arch].append(measure_chunk(arch, cfg, stack))
            if progress is not None:
                progress(f"{cfg.setup} d={cfg.d} {arch} seeds {chunk[0]}..{chunk[-1]}")
        del stack
    return {arch: _concat(parts) for arch, parts in results.items()}


def environment(device: str) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": device,
           "numpy": np.__version__, "threads": torch.get_num_threads()}
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        env["tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def to_record(cfg: StackConfig, archs: Sequence[str], seeds: Sequence[int], device: str,
              measured: dict[str, dict], elapsed_s: float) -> dict:
    """A JSON-ready record (lists of floats), the input of meanfield.analyse_record."""

    def listify(value):
        if isinstance(value, dict):
            return {str(k): listify(v) for k, v in value.items()}
        return np.asarray(value, dtype=np.float64).tolist()

    return {
        "config": asdict(cfg),
        "archs": list(archs),
        "seeds": [int(s) for s in seeds],
        "environment": environment(device),
        "elapsed_s": elapsed_s,
        "measurements": {arch: listify(measured[arch]) for arch in archs},
    }


def run_record(archs: Sequence[str], cfg: StackConfig, seeds: Sequence[int], device: str = "cpu",
               memory_budget_bytes: float = 4e9, progress=None) -> dict:
    torch.set_grad_enabled(True)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # measure fp32, not tf32
        torch.cuda.synchronize()
    start = time.perf_counter()
    measured = measure(archs, cfg, seeds, device, memory_budget_bytes, progress)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return to_record(cfg, archs, seeds, device, measured, time.perf_counter() - start)
