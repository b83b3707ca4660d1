"""Mean-field closed forms for Transformer stacks at initialisation, and the view of a
recording that the claims read (no torch here).

Predictions are closed forms (mpmath where an integral is needed) evaluated on recorded
measurements (meanfield/montecarlo.py writes them), so recorded GPU results can be re-judged
on any CPU machine. How they are judged — one claim at a time, Holm within the claim's own
comparisons, HOLDS / REFUTED / INCONCLUSIVE — is normtheory/theory/claims; the
token-correlation recursion is meanfield/recursion.py.

Sources (restated in docs/theory.md §Mean-field theory): Xiong et al. 2020 (arXiv 2002.04745) Lemma 1, 2 and
Theorem 1; Kedia et al. 2024 (DeepScaleLM) variance rules; Sun et al. 2025 (arXiv
2502.05795) Curse of Depth and LayerNorm Scaling; Peri-LN (arXiv 2502.02732).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import mpmath
import numpy as np

from normtheory.theory.meanfield import constants as C

FP32_UNIT_ROUNDOFF = 2.0**-24

# ------------------------------------------------------------------ variance rules (Kedia)
# Per-coordinate second moments and variances at initialisation; weights N(0, weight_var).


def linear_forward_second_moment(fan_in: int, weight_var: float, input_second_moment: float) -> float:
    """y = x W: E[y_j^2] = fan_in * weight_var * E[x^2] (= d1 sigma_w^2 (sigma^2 + mu^2))."""
    return fan_in * weight_var * input_second_moment


def linear_backward_var(fan_out: int, weight_var: float, grad_var: float) -> float:
    """dL/dx = W dL/dy: Var = fan_out * weight_var * Var(dL/dy)."""
    return fan_out * weight_var * grad_var


def relu_second_moment(var: float) -> float:
    """Xiong Lemma 1, per coordinate: X ~ N(0, var) => E[ReLU(X)^2] = var / 2."""
    return var / 2.0


def relu_mean(var: float) -> float:
    return math.sqrt(var / (2.0 * math.pi))


def relu_var(var: float) -> float:
    return var * (math.pi - 1.0) / (2.0 * math.pi)


def relu_backward_var(grad_var: float) -> float:
    """Half the coordinates pass the gradient."""
    return grad_var / 2.0


@lru_cache(maxsize=256)
def gelu_second_moment(var: float) -> float:
    """E[GELU(X)^2], X ~ N(0, var), GELU(x) = x Phi(x): no closed form, so mpmath.quad."""
    if var <= 0:
        return 0.0
    with mpmath.workdps(30):
        s = mpmath.sqrt(var)
        density = lambda z: mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
        gelu = lambda x: x * mpmath.ncdf(x)  # noqa: E731
        value = mpmath.quad(lambda z: gelu(s * z) ** 2 * density(z), [-mpmath.inf, 0, mpmath.inf])
        return float(value)


def activation_second_moment(activation: str, var: float) -> float:
    if activation == "relu":
        return relu_second_moment(var)
    if activation == "gelu":
        return gelu_second_moment(var)
    raise ValueError(f"unknown activation {activation!r}")


def layernorm_output_second_moment(input_var: float, eps: float) -> float:
    """Per coordinate: var / (var + eps) (1 without eps)."""
    return input_var / (input_var + eps)


def layernorm_cross_covariance(d: int) -> float:
    """LN outputs sum to zero, so distinct coordinates have covariance -1/(d - 1)."""
    return -1.0 / (d - 1)


def layernorm_backward_var(grad_var: float, input_var: float) -> float:
    return grad_var / input_var


def dropout_second_moment(var: float, mean: float, p: float) -> float:
    """Inverted dropout: Var = (var + p mean^2) / (1 - p)."""
    return (var + p * mean * mean) / (1.0 - p)


def scaled_residual_var(stream_var: float, branch_var: float, lam: float, beta: float) -> float:
    """x <- lam x + beta F(x), F independent of x with zero mean: lam^2 v + beta^2 v_F."""
    return lam * lam * stream_var + beta * beta * branch_var


# ------------------------------------------------------------------ block gains per setup


@dataclass(frozen=True)
class BlockGains:
    """What one block adds to E||h||^2 / d, for a normalised input (||x||^2 = d)."""

    d: int
    d_ff: int
    activation: str
    preact_var: float  # Var of W1 x coordinates for a normalised x
    ffn_gain: float  # E||FFN(x)||^2 / d, exact
    attention_gain_max: float  # E||Attn(x)||^2 / d <= this (convex mix of values); >= 0
    eps: float

    def activation_ms(self, scale2: float = 1.0) -> float:
        """E||act||^2 / d_ff when the FFN input is scaled by sqrt(scale2)."""
        return activation_second_moment(self.activation, self.preact_var * scale2)

    def ffn_gain_scaled(self, scale2: float) -> float:
        return linear_forward_second_moment(self.d_ff, self._w2_var, self.activation_ms(scale2))

    @property
    def _w2_var(self) -> float:
        return 2.0 / (self.d_ff + self.d)


def block_gains(setup: str, d: int, activation: str = "relu", eps: float | None = None) -> BlockGains:
    """Compose the variance rules through one block (weights Xavier-normal, zero biases;
    d_ff and the default eps from meanfield/constants.py)."""
    d_ff = C.d_ff(setup, d)
    if eps is None:
        eps = C.eps(setup, "pre_ln")
    w1_var = 2.0 / (d + d_ff)
    w2_var = 2.0 / (d_ff + d)
    preact_var = linear_forward_second_moment(d, w1_var, 1.0)
    ffn_gain = linear_forward_second_moment(d_ff, w2_var, activation_second_moment(activation, preact_var))
    value_ms = linear_forward_second_moment(d, 1.0 / d, 1.0)
    # xiong has no output projection; standard has W^O (d x d, Var 1/d)
    attention_max = value_ms if setup == "xiong" else linear_forward_second_moment(d, 1.0 / d, value_ms)
    return BlockGains(d, d_ff, activation, preact_var, ffn_gain, attention_max, eps)


def model_error_exact(setup: str, d: int) -> float:
    """Relative model error of an 'exact' forward prediction.

    fp32 matmuls: each entry carries a relative error <= gamma_d ~ d u, a mean square twice
    that. The standard setup's normalisers add eps: an LN output's mean square is
    var / (var + eps), short by <= eps / var; per-token variances at normaliser inputs are
    >= 0.01 at initialisation (the smallest are attention outputs, ~ 1/n of the values'), so
    the shortfall is <= 100 eps."""
    fp32 = 2.0 * d * FP32_UNIT_ROUNDOFF
    return fp32 if setup == "xiong" else fp32 + 100.0 * C.LAYERNORM_EPS


def model_error_ratio_of_means(d: int) -> float:
    """Relative error of E[A/B] ~ E[A]/E[B] for the last layer's W2 gradient.

    A = ||r||^2 (ReLU of d_ff Gaussians: relative variance 5/d_ff <= 5/d, from E[R^4] = 3/2,
    E[R^2] = 1/2 per coordinate), B = ||y||^2 (relative variance <= 5/d, same argument on the
    branch outputs). The second-order delta method gives Var_B/E_B^2 + |Cov_AB|/(E_A E_B) <=
    10/d; centring the final hidden state (the band is on the uncentred one) adds 1/d."""
    return 11.0 / d


# ------------------------------------------------------------------ statistics


@lru_cache(maxsize=4096)
def student_t_quantile(prob: float, dof: int) -> float:
    """Quantile of Student's t (prob in (0.5, 1)), by bisection on the CDF written with the
    regularised incomplete beta function: P(T <= t) = 1 - I_{dof/(dof+t^2)}(dof/2, 1/2)/2."""
    if not 0.5 < prob < 1.0 or dof < 1:
        raise ValueError("need 0.5 < prob < 1 and dof >= 1")
    with mpmath.workdps(30):
        def cdf(t):
            x = dof / (dof + t * t)
            return 1 - mpmath.betainc(dof / 2.0, 0.5, 0, x, regularized=True) / 2
        lo, hi = 0.0, 1.0
        while cdf(hi) < prob:
            hi *= 2.0
        for _ in range(200):
            mid = (lo + hi) / 2
            if cdf(mid) < prob:
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-12 * hi:
                break
        return float(hi)


@dataclass(frozen=True)
class Estimate:
    mean: float
    se: float
    n: int

    @property
    def dof(self) -> int:
        return self.n - 1


def estimate(samples) -> Estimate:
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError("an estimate needs at least 2 independent samples")
    return Estimate(float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)), int(x.size))


def log_of_root_mean(e: Estimate) -> tuple[float, float]:
    """log sqrt(mean) and its delta-method SE (for gradient norms from squared norms)."""
    return 0.5 * math.log(e.mean), 0.5 * e.se / e.mean


def log_of_mean(e: Estimate) -> tuple[float, float]:
    return math.log(e.mean), e.se / e.mean


def ols_weights(x: Sequence[float]) -> np.ndarray:
    """Slope = sum w_k y_k for least squares of y on x."""
    xs = np.asarray(x, dtype=np.float64)
    centred = xs - xs.mean()
    return centred / np.sum(centred * centred)


# ------------------------------------------------------------------ records


class RecordView:
    """Measurements of one record (one setup, one d, several depths and archs)."""

    def __init__(self, record: dict):
        self.record = record
        cfg = record["config"]
        self.setup: str = cfg["setup"]
        self.d: int = int(cfg["d"])
        self.depths: tuple[int, ...] = tuple(int(x) for x in cfg["depths"])
        self.n_tokens: int = int(cfg["n_tokens"])
        self.activation: str = cfg.get("activation", "relu")
        self.readout: str = cfg.get("readout", C.DEFAULT_READOUT)
        self.loss: str = cfg.get("loss", C.DEFAULT_LOSS)
        self.qk_gain: float = float(cfg.get("qk_gain", 1.0))
        self.archs: list[str] = list(record["archs"])
        self.n_seeds = len(record["seeds"])
        self.constants = C.constants_of_record(record)

    @property
    def protocol(self) -> str:
        """What the loss reads: every report shows it (the issue 17 review found --tokens unstated)."""
        return f"tokens={self.n_tokens} readout={self.readout} loss={self.loss}" + \
            (f" qk_gain={self.qk_gain:g}" if self.qk_gain != 1.0 else "")

    @property
    def token_readout(self) -> bool:
        """The protocol whose output gradient is u_i / n (the closed forms assume it)."""
        return self.readout == "token" and self.loss == "linear"

    def has(self, arch: str, key: str) -> bool:
        return arch in self.archs and key in self.record["measurements"][arch]

    def array(self, arch: str, key: str) -> np.ndarray:
        return np.asarray(self.record["measurements"][arch][key], dtype=np.float64)

    def grad_sq(self, arch: str, depth: int, name: str) -> np.ndarray:
        return np.asarray(self.record["measurements"][arch]["grad_sq"][str(depth)][name], dtype=np.float64)

    def final_hidden(self, arch: str, depth: int) -> np.ndarray:
        """Per seed E||h_L||^2/d of the depth-L model (Mix-LN's depth-L model is not a prefix of
        the deepest one, so it is recorded apart)."""
        m = self.record["measurements"][arch]
        if "final_hidden_ms" in m:
            return np.asarray(m["final_hidden_ms"][str(depth)], dtype=np.float64)
        return self.array(arch, "hidden_ms")[:, depth]

    def eps(self, arch: str) -> float:
        stored = self.constants.get("eps", {})
        return float(stored[arch]) if arch in stored else C.eps(self.setup, arch)

    def gains(self, arch: str) -> BlockGains:
        return block_gains(self.setup, self.d, self.activation, self.eps(arch))


def lns_scale2(layer: int) -> float:
    """LayerNorm Scaling: LN outputs of block l (1-based) are multiplied by 1/sqrt(l)."""
    return 1.0 / layer


def hidden_band(arch: str, g: BlockGains, depth: int) -> tuple[float, float]:
    """Band for E||h_depth||^2 / d with E||h_0||^2 / d = 1 (Xiong Lemma 2, generalised).

    Each block adds the FFN branch's exact gain (scaled by the branch input's square scale)
    plus an attention gain in [0, attention_gain_max] (a convex mix of values); cross terms
    vanish because flipping the sign of W^V or W^2 leaves the weights' law unchanged."""
    lower = upper = 1.0
    for layer in range(1, depth + 1):
        s2 = lns_scale2(layer) if arch == "lns" else 1.0
        ffn = g.ffn_gain_scaled(s2)
        lower += ffn
        upper += ffn + g.attention_gain_max * s2
    return lower, upper


def last_w2_grad_sq(arch: str, g: BlockGains, depth: int, n_tokens: int, hidden_ms: float) -> float:
    """E||dL/dW2 of the last block||_F^2 for L = (1/n) sum_i <u_i, out_i>, u_i ~ N(0, I).

    dW2 = sum_i r_i g_i^T with g_i = J_i^T u_i / n; averaging over u kills i != j terms, and
    E_u ||J^T u||^2 = ||J||_F^2 = d (d - k) / ||y||^2 (LN: k = 2, projections on y and on 1;
    RMSNorm: k = 1). With ||r||^2 = d_ff E[act^2] and ||y||^2 = d * hidden_ms:
    E||dW2||^2 = d_ff E[act^2] (d - k) / (n hidden_ms) (a ratio of means; see
    model_error_ratio_of_means)."""
    s2 = lns_scale2(depth) if arch == "lns" else 1.0
    k = 1 if arch in C.RMS_FAMILY else 2
    return g.d_ff * g.activation_ms(s2) * (g.d - k) / (n_tokens * hidden_ms)
