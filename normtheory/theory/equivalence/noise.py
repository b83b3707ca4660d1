"""A first-order, statistical rounding-error model of a low-precision run, evaluated in fp64.

Used to derive the tolerance of the fp32 / bf16 equivalence checks without looking at the
differences being judged. The model (Wilkinson's and Higham & Mary's probabilistic analysis):

* Every value a low-precision run stores (each parameter, each matmul output, each norm,
  activation, softmax and residual-add output, each gradient of those in the backward pass)
  carries an independent rounding error, uniform on [−ulp/2, ulp/2] of the working format
  (p significand bits; ulp(v) = 2^(⌊log2|v|⌋ − p + 1)). Subnormals and overflow are ignored.
* A length-k inner product accumulated with unit roundoff u_acc (fp32 for bf16 and fp32
  runs, as torch's CPU and CUDA GEMMs do) carries in addition a Gaussian error with standard
  deviation u_acc·sqrt(k/3)·Σ|a_i b_i|: k roundings of partial sums, each of size at most
  Σ|a_i b_i| (Higham & Mary 2019, "A new approach to probabilistic rounding error analysis").
  This assumes nothing about the summation order, so it over-estimates blocked GEMMs.
* Norm statistics are accumulated with u_acc: the sum of squares gets a relative error of
  std u_acc·sqrt(d/3), the LayerNorm mean an absolute error of std u_acc·sqrt(d/3)·mean|x|.
  The norm's input gradient gets a per-element error of std u_acc·sqrt(d/3)·rms(g) for its
  two row reductions.

Injecting these errors into an fp64 forward and backward (the `NoiseOps` hooks of
`PreNormDecoder`) and measuring the change of an output gives a Monte Carlo estimate of that
output's rounding-error second moment: a condition estimate measured on the model itself,
at its real weights and inputs, independent of the other model it is compared with.
For fp64 itself the errors are injected 2^23 times larger and the result scaled back (valid
to first order, which is what the model claims). Depth enters through the number of rounding
sites and through the measured propagation of each site's error to the output; nothing is
assumed about it in closed form.

What the model assumes or leaves out (each either conservative or second order here):
* first order: u times the model's sensitivity is small (errors propagate linearly);
* independence of the rounding errors (stagnation of bf16 updates would violate it: that is
  why the training check's failures, if any, must be read with this in mind);
* elementwise functions (exp in softmax, GELU, rsqrt) are evaluated to within about an ulp
  before the stored result is rounded; only that rounding is injected;
* attention is modelled as three stored steps (scores, probabilities, output) although the
  real runs use fused SDPA kernels that round once: conservative;
* the LayerNorm mean error is applied with the row's output scale (|γ| unknown at the hook);
* embedding-gradient row sums (index_add) get only the final rounding of the gradient;
* AdamW's moment buffers are not perturbed (their error changes an update by ~u·lr, far below
  the parameter's own rounding u·|θ|);
* subnormals, overflow and TF32 are not modelled (TF32 is off by default for torch matmuls).
"""

from __future__ import annotations

import torch

SIGNIFICAND_BITS = {"fp64": 53, "fp32": 24, "bf16": 8}
# Accumulation precision of reductions inside a kernel for each working format.
ACCUMULATION_BITS = {"fp64": 53, "fp32": 24, "bf16": 24}
_LARGEST_INJECTED_BITS = 30  # below this the fp64 evaluation itself is exact enough


class NoiseOps:
    """`PreNormDecoder` hooks that add the modelled rounding errors (fwd and bwd)."""

    def __init__(self, fmt: str, generator: torch.Generator):
        p, p_acc = SIGNIFICAND_BITS[fmt], ACCUMULATION_BITS[fmt]
        shift = max(0, p - _LARGEST_INJECTED_BITS)
        self.amplification = 2.0**shift  # deviations are divided by this afterwards
        self.p = p - shift
        self.u_acc = 2.0 ** -(p_acc - shift)
        self.gen = generator

    # -- error samples
    def rounding_error(self, v: torch.Tensor) -> torch.Tensor:
        _, exponent = torch.frexp(v.detach())  # v = m 2^e, m in [0.5, 1): ulp = 2^(e - p)
        ulp = torch.ldexp(torch.ones_like(v), exponent - self.p)
        ulp = torch.where(v == 0, torch.zeros_like(ulp), ulp)
        return (torch.rand(v.shape, generator=self.gen, dtype=v.dtype) - 0.5) * ulp

    def gaussian(self, std: torch.Tensor) -> torch.Tensor:
        return torch.randn(std.shape, generator=self.gen, dtype=std.dtype) * std

    def accumulation_error(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        k = a.shape[-1]
        return self.gaussian(self.u_acc * (k / 3) ** 0.5 * (a.abs() @ b.abs()))

    # -- hooks called by the model
    def store(self, t: torch.Tensor) -> torch.Tensor:
        return _Store.apply(t, self)

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _Matmul.apply(a, b, self)

    def norm(self, normalise, x: torch.Tensor, kind: str, d: int, eps: float) -> torch.Tensor:
        tiny = torch.finfo(x.dtype).tiny
        with torch.no_grad():
            width = x.shape[-1]
            sqrt_terms = (width / 3) ** 0.5
            if kind == "layernorm":
                centred = x - x.mean(-1, keepdim=True)
                mean_square = centred.pow(2).mean(-1, keepdim=True)
                mean_err = self.gaussian(self.u_acc * sqrt_terms * x.abs().mean(-1, keepdim=True))
                shift = -mean_err / mean_square.sqrt().clamp_min(tiny)
            elif kind == "rmsnorm":
                mean_square = x.pow(2).mean(-1, keepdim=True)
                shift = torch.zeros_like(mean_square)
            else:
                s, sq = x.sum(-1, keepdim=True), x.pow(2).sum(-1, keepdim=True)
                mean_square = (sq + s * s) / d
                shift = torch.zeros_like(mean_square)
            rel_std = self.u_acc * (0.5 * sqrt_terms + 2.0)  # Σx² error, then rsqrt within 2 ulps
            if kind == "crmsnorm":
                ratio = 2 * s.abs() * x.abs().sum(-1, keepdim=True) / (sq + s * s).clamp_min(tiny)
                rel_std = rel_std + 0.5 * self.u_acc * sqrt_terms * ratio
            scale_err = self.gaussian(rel_std * torch.ones_like(mean_square))
            rstd = torch.rsqrt(mean_square + eps)
        shared: dict[str, torch.Tensor] = {}  # the output-gradient scale, handed from the output hook to the input hook
        y = normalise(_NormInputGrad.apply(x, rstd, shared, self, width))
        return _NormStats.apply(y, scale_err, shift, shared)


class _Store(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, model):
        ctx.model = model
        return t + model.rounding_error(t)

    @staticmethod
    def backward(ctx, g):
        return g + ctx.model.rounding_error(g), None


class _Matmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, model):
        ctx.model = model
        ctx.save_for_backward(a, b)
        y = a @ b
        return y + model.rounding_error(y) + model.accumulation_error(a, b)

    @staticmethod
    def backward(ctx, g):
        model = ctx.model
        a, b = ctx.saved_tensors
        g = g + model.rounding_error(g)
        bt, at = b.transpose(-1, -2), a.transpose(-1, -2)
        ga = g @ bt
        ga = ga + model.rounding_error(ga) + model.accumulation_error(g, bt)
        gb = at @ g
        gb = gb + model.rounding_error(gb) + model.accumulation_error(at, g)
        return ga, gb, None


class _NormStats(torch.autograd.Function):
    """Forward: the statistics error, y(1 + δ) plus the mean error's shift (applied with the
    row's own output scale, since |γ| is not known here). Backward: records rms(∂L/∂y)."""

    @staticmethod
    def forward(ctx, y, scale_err, shift, shared):
        ctx.shared = shared
        y_rms = y.pow(2).mean(-1, keepdim=True).sqrt()
        return y * (1 + scale_err) + shift * y_rms

    @staticmethod
    def backward(ctx, g):
        ctx.shared["g_rms"] = g.pow(2).mean(-1, keepdim=True).sqrt()
        return g, None, None, None


class _NormInputGrad(torch.autograd.Function):
    """Backward: the input gradient rstd·(g − mean(g) − y·mean(g·y)) is formed with two row
    reductions and cancels (to zero when d = 2): its error is committed after the projection,
    of size u_acc·(sqrt(d/3) + 3)·rstd·rms(g) per element, and it is then rounded."""

    @staticmethod
    def forward(ctx, x, rstd, shared, model, width):
        ctx.rstd, ctx.shared, ctx.model, ctx.width = rstd, shared, model, width
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        model = ctx.model
        scale = model.u_acc * ((ctx.width / 3) ** 0.5 + 3.0) * ctx.rstd * ctx.shared["g_rms"]
        g = g + model.gaussian(scale.expand_as(g))
        return g + model.rounding_error(g), None, None, None, None
