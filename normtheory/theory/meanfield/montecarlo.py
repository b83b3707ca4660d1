"""Monte Carlo harness: real torch Transformer stacks at initialisation, seeds batched.

Two setups (Xiong et al. 2020; every constant in meanfield/constants.py):

* ``xiong`` — the proof's setup: W^Q = W^K = 0, so attention is the uniform average over
  tokens; W^V, W^1, W^2 are d x d with Xavier N(0, 1/d) entries; no output projection, no
  biases; normalisers without eps and without affine parameters; ReLU FFN.
* ``standard`` — softmax attention with d/64 heads (``F.scaled_dot_product_attention``),
  W^Q, W^K, W^V, W^O d x d and an FFN d -> 4d -> d, all Xavier-normal, zero biases,
  LayerNorm eps 1e-5 (RMSNorm 1e-6) with identity affine parameters (constants.py; every
  recording stores them).

Architectures: normtheory/theory/archs (post_ln, pre_ln, peri_ln, lns, pre_rms, mix_ln,
hybrid_norm, normformer, ngpt, qk_norm, and pre_lp:P, the Pre-LN stack with the Lp normaliser
of exponent P >= 1 or inf); their blocks are archs/blocks.py.

Protocol (constants.py): L = (1/n) sum_i <u_i, out_i> with u_i ~ N(0, I_d) per token (readout
"token", the default), one u for all tokens ("shared"), or the cross-entropy of a random
head against random labels (loss "xent"). The token readout's output gradient is known in
closed form (u_i / n), which lets predictions.py predict the last layer's weight gradient
without any fitted constant. The readout of every protocol is drawn after the weights'
generator has produced h0 and the token readout, so every protocol sees identical weights.

Depths share weights: the depth-L model is the first L blocks of the deepest one (weights
are drawn layer by layer from one generator per seed), so one forward pass serves every
depth and each depth gets its own loss and backward pass. Points at different depths are
then positively correlated, which makes independent-error intervals on slopes conservative.
Mix-LN is the exception (its switch layer depends on the model's depth): each depth gets its
own forward pass over the same weights.
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

from normtheory.theory import archs as A
from normtheory.theory.archs import blocks as B
from normtheory.theory.meanfield import constants as C

ARCHS = A.ORIGINAL_ARCHS  # the five archs of the H100 recordings; A.ARCHS has every arch
LP_ARCH_PREFIX = A.LP_ARCH_PREFIX
lp_arch = A.lp_arch
lp_exponent = A.lp_exponent
SETUPS = C.SETUPS
ACTIVATIONS = ("relu", "gelu")
HEAD_DIM = C.HEAD_DIM
uniform_attention = B.uniform_attention


@dataclass(frozen=True)
class StackConfig:
    """Everything that defines one family of random models (all depths up to max(depths))."""

    setup: str
    d: int
    depths: tuple[int, ...]
    n_tokens: int = C.DEFAULT_TOKENS
    activation: str = "relu"
    readout: str = C.DEFAULT_READOUT
    loss: str = C.DEFAULT_LOSS
    qk_gain: float = 1.0  # W^Q and W^K multiplied by this after drawing (sharpens attention)

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
        if self.readout not in C.READOUTS or self.loss not in C.LOSSES:
            raise ValueError(f"readout must be one of {C.READOUTS}, loss one of {C.LOSSES}")
        if not self.qk_gain > 0:
            raise ValueError("qk_gain must be positive")

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def d_ff(self) -> int:
        return C.d_ff(self.setup, self.d)

    @property
    def n_heads(self) -> int:
        return C.n_heads(self.d)

    def eps(self, arch: str) -> float:
        return C.eps(self.setup, arch)

    def weight_shapes(self) -> dict[str, tuple[int, int]]:
        d, f = self.d, self.d_ff
        if self.setup == "xiong":
            return {"wv": (d, d), "w1": (d, f), "w2": (f, d)}
        return {"wq": (d, d), "wk": (d, d), "wv": (d, d), "wo": (d, d), "w1": (d, f), "w2": (f, d)}


def xavier_normal_var(fan_in: int, fan_out: int) -> float:
    """Glorot & Bengio's normal initialisation: Var = 2 / (fan_in + fan_out)."""
    return 2.0 / (fan_in + fan_out)


def seed_key(seed: int, cfg: StackConfig, stream: int = 0) -> int:
    """One generator seed per (seed, setup, d, n): independent of chunking and of depths.
    stream 1 is the readout generator of the shared and xent protocols."""
    parts = [int(seed), SETUPS.index(cfg.setup), cfg.d, cfg.n_tokens] + ([1000 + stream] if stream else [])
    mixed = np.random.SeedSequence(parts)
    return int(mixed.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


# ---------------------------------------------------------------- weights and inputs


@dataclass
class RandomStack:
    """Weights (per layer: name -> tensor (S, in, out)), inputs h0 (S, n, d), readout u
    (S, n, d) of the token protocol, and the other protocols' readout tensors."""

    layers: list[dict[str, torch.Tensor]]
    h0: torch.Tensor
    u: torch.Tensor
    readout: dict[str, torch.Tensor] = field(default_factory=dict)


def _protocol_readout(cfg: StackConfig, seeds: Sequence[int], device: str, dtype) -> dict[str, torch.Tensor]:
    S, n, d = len(seeds), cfg.n_tokens, cfg.d
    if cfg.readout == "token" and cfg.loss == "linear":
        return {}
    out = {"u_shared": torch.empty(S, d, device=device, dtype=dtype),
           "head": torch.empty(S, d, C.XENT_VOCAB, device=device, dtype=dtype),
           "labels": torch.empty(S, n, device=device, dtype=torch.long)}
    for s, seed in enumerate(seeds):
        gen = torch.Generator(device=device).manual_seed(seed_key(seed, cfg, stream=1))
        out["u_shared"][s].normal_(generator=gen)
        out["head"][s].normal_(std=1.0 / math.sqrt(d), generator=gen)
        out["labels"][s] = torch.randint(0, C.XENT_VOCAB, (n,), generator=gen, device=device)
    return out


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
        for name, w in layer.items():
            if name in ("wq", "wk") and cfg.qk_gain != 1.0:
                w.mul_(cfg.qk_gain)
            w.requires_grad_(True)
    return RandomStack(layers, h0, u, _protocol_readout(cfg, seeds, device, dtype))


def softmax_attention(x: torch.Tensor, w: dict[str, torch.Tensor], n_heads: int) -> torch.Tensor:
    """Plain multi-head softmax attention (the standard setup's Pre-LN/Post-LN attention)."""
    ctx = B.BlockContext(setup="standard", arch="pre_ln", eps=0.0, n_heads=n_heads)
    return B.softmax_attention(x, w, ctx)


# ---------------------------------------------------------------- forward


@dataclass
class ForwardTrace:
    """Per-layer tensors kept for measurement; lists indexed by block (0-based)."""

    hidden: list[torch.Tensor] = field(default_factory=list)  # h_0 .. h_L, shape (S, n, d)
    blocks: B.BlockTrace = field(default_factory=B.BlockTrace)

    @property
    def activation_ms(self):
        return self.blocks.activation_ms


def forward_stack(arch: str, cfg: StackConfig, stack: RandomStack, depth: int | None = None) -> ForwardTrace:
    """Run the model of `depth` blocks (default: the deepest) once, keeping every hidden state
    with its autograd graph."""
    A.check_arch(arch, cfg.setup if stack is not None else None)
    depth = cfg.max_depth if depth is None else depth
    trace = ForwardTrace()
    ctx = B.BlockContext(setup=cfg.setup, arch=arch, eps=cfg.eps(arch), n_heads=cfg.n_heads,
                         activation=cfg.activation, depth=depth, trace=trace.blocks)
    block = B.block_of(arch)
    h = B.embed(arch, stack.h0)
    trace.hidden.append(h)
    for index, w in enumerate(stack.layers[:depth]):
        if arch == "ngpt":
            w = B.ngpt_weights(w)
        h = block(h, w, index + 1, ctx)
        trace.hidden.append(h)
    return trace


def model_output(arch: str, cfg: StackConfig, h_last: torch.Tensor, depth: int | None = None) -> torch.Tensor:
    return B.output(arch, h_last, cfg.eps(arch), cfg.max_depth if depth is None else depth)


def protocol_loss(cfg: StackConfig, stack: RandomStack, y: torch.Tensor) -> torch.Tensor:
    """The summed per-seed losses (seeds are independent models: each gets its own gradient)."""
    if cfg.loss == "xent":
        logits = torch.bmm(y, stack.readout["head"])
        per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), stack.readout["labels"].reshape(-1),
                                    reduction="none")
        return per_token.view(y.shape[0], -1).mean(dim=-1).sum()
    u = stack.u if cfg.readout == "token" else stack.readout["u_shared"][:, None, :]
    return (u * y).sum(dim=-1).mean(dim=-1).sum()


# ---------------------------------------------------------------- measurement


def _token_statistics(hidden: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """Per layer: mean pairwise cosine of the centred tokens, and mean cos(h_l, h_0)."""
    corr, cos0 = [], []
    with torch.no_grad():
        h0 = hidden[0].double()
        for h in hidden:
            c = h.double() - h.double().mean(dim=-1, keepdim=True)
            unit = c / torch.linalg.vector_norm(c, dim=-1, keepdim=True).clamp_min(1e-300)
            gram = torch.bmm(unit, unit.transpose(1, 2))
            n = gram.shape[-1]
            corr.append((gram.sum(dim=(1, 2)) - n) / (n * (n - 1)))
            cos0.append(F.cosine_similarity(h.double(), h0, dim=-1).mean(dim=-1))
    return {"token_corr": torch.stack(corr, dim=1).cpu().numpy(), "hidden_cos0": torch.stack(cos0, dim=1).cpu().numpy()}


def _trace_arrays(arch: str, trace: ForwardTrace) -> dict:
    def stacked(values):
        return torch.stack(values, dim=1).cpu().numpy()

    out: dict = {
        "hidden_ms": stacked([B.mean_square(h) for h in trace.hidden]),
        "hidden_centered_ms": stacked([B.mean_square(h - h.mean(dim=-1, keepdim=True)) for h in trace.hidden]),
        "activation_ms": stacked(trace.blocks.activation_ms),
        **_token_statistics(trace.hidden),
    }
    for key in ("residual_sum_ms", "attention_sum_ms", "logit_max", "entropy"):
        values = getattr(trace.blocks, key)
        if values and len(values) == len(trace.hidden) - 1:
            out[key] = stacked(values)
    return out


def _gradients(arch: str, cfg: StackConfig, stack: RandomStack, trace: ForwardTrace, depth: int) -> dict:
    names = list(stack.layers[0])
    y = model_output(arch, cfg, trace.hidden[depth], depth)
    loss = protocol_loss(cfg, stack, y)
    weights = [layer[name] for layer in stack.layers[:depth] for name in names]
    hidden = trace.hidden[1 : depth + 1]
    grads = torch.autograd.grad(loss, weights + hidden, retain_graph=True)
    wgrads, hgrads = grads[: len(weights)], grads[len(weights) :]
    grad_sq = {}
    for j, name in enumerate(names):
        per_layer = [B.sum_of_squares(wgrads[i * len(names) + j], (-2, -1)) for i in range(depth)]
        grad_sq[name] = torch.stack(per_layer, dim=1).cpu().numpy()
    grad_sq["hidden"] = torch.stack([B.sum_of_squares(g, (-1, -2)) / g.shape[-2] for g in hgrads], dim=1).cpu().numpy()
    return grad_sq


def measure_chunk(arch: str, cfg: StackConfig, stack: RandomStack) -> dict:
    """Forward once (Mix-LN: once per depth), then one loss and one backward pass per depth.
    Returns numpy arrays with a leading seed axis."""
    if A.is_prefix(arch):
        trace = forward_stack(arch, cfg, stack)
        out = _trace_arrays(arch, trace)
        out["grad_sq"] = {depth: _gradients(arch, cfg, stack, trace, depth) for depth in cfg.depths}
        return out
    out, per_depth, finals = {}, {}, {}
    for depth in sorted(cfg.depths):
        trace = forward_stack(arch, cfg, stack, depth)
        if depth == cfg.max_depth:
            out = _trace_arrays(arch, trace)
        finals[depth] = B.mean_square(trace.hidden[depth]).cpu().numpy()
        per_depth[depth] = _gradients(arch, cfg, stack, trace, depth)
        del trace
    out["final_hidden_ms"] = finals
    out["grad_sq"] = per_depth
    return out


def chunk_size(cfg: StackConfig, memory_budget_bytes: float) -> int:
    """Seeds per chunk: weights + one set of weight gradients, fp32, must fit the budget."""
    per_seed = 2 * 4 * cfg.max_depth * sum(a * b for a, b in cfg.weight_shapes().values())
    return max(1, int(memory_budget_bytes // max(per_seed, 1)))


def _concat(parts: list[dict]) -> dict:
    """The chunks' arrays joined along the seed axis, nested dicts (per depth, per weight) alike."""
    first = parts[0]
    merged: dict = {}  # as the parts: arrays, and dicts of them
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
    for arch in archs:
        A.check_arch(arch, cfg.setup)
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
    """A JSON-ready record (lists of floats) with every constant it was made with."""

    def listify(value):
        if isinstance(value, dict):
            return {str(k): listify(v) for k, v in value.items()}
        return np.asarray(value, dtype=np.float64).tolist()

    return {
        "config": asdict(cfg),
        "archs": list(archs),
        "seeds": [int(s) for s in seeds],
        "constants": C.recorded_constants(cfg.setup, cfg.d, archs, n_tokens=cfg.n_tokens,
                                          readout=cfg.readout, loss=cfg.loss),
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
