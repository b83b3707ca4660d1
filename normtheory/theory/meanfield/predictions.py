"""Mean-field predictions for Transformer stacks at initialisation, and how they are judged.

No torch here: predictions are closed forms (mpmath where an integral is needed), and the
judge works on recorded measurements (meanfield/montecarlo.py writes them), so recorded GPU results
can be re-judged on any CPU machine.

Every prediction declares its kind:
  exact    the expectation equals a value; tolerance = t * SE + a stated model error
  band     the expectation lies in [lower, upper]; same tolerance on each edge
  scaling  a law known up to a constant: the constant is fitted at one reference point
           (smallest d, smallest L) and the ratio to every other point is judged in log
           space; fitted exponents (log-log slopes) are judged against the law's exponent
           range over the same grid. Tolerance = t * SE + a stated model error.
t is Student's quantile with S - 1 degrees of freedom (S seeds) at a Bonferroni level:
the whole report is one family at 5%, so one FAIL is a finding, not bad luck.

Sources (restated in THEORY_NOTES.md): Xiong et al. 2020 (arXiv 2002.04745) Lemma 1, 2 and
Theorem 1; Kedia et al. 2024 (DeepScaleLM) variance rules; Sun et al. 2025 (arXiv
2502.05795) Curse of Depth and LayerNorm Scaling; Peri-LN (arXiv 2502.02732).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import mpmath
import numpy as np

FP32_UNIT_ROUNDOFF = 2.0**-24
FAMILY_ALPHA = 0.05
KINDS = ("exact", "band", "scaling")

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
    """Compose the variance rules through one block (weights Xavier-normal, zero biases)."""
    d_ff = d if setup == "xiong" else 4 * d
    if eps is None:
        eps = 0.0 if setup == "xiong" else 1e-5
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
    return fp32 if setup == "xiong" else fp32 + 100.0 * 1e-5


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
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean()
    return centred / np.sum(centred * centred)


# ------------------------------------------------------------------ comparisons and verdicts


@dataclass
class Comparison:
    prediction: str
    kind: str
    source: str
    setup: str
    arch: str
    quantity: str
    d: int
    L: int | None  # depth of the model, None when several depths enter
    layer: int | None
    measured: float
    se: float
    dof: int
    lower: float  # predicted interval (lower == upper for 'exact')
    upper: float
    model_error: float  # absolute, in the units of `measured`
    t: float = float("nan")
    verdict: str = "unjudged"

    @property
    def tolerance(self) -> float:
        return self.t * self.se + self.model_error

    def judge(self, t: float) -> None:
        self.t = t
        tol = self.tolerance
        inside = (self.lower - tol) <= self.measured <= (self.upper + tol)
        self.verdict = "PASS" if inside else "FAIL"


def judge_all(comparisons: list[Comparison], family_alpha: float = FAMILY_ALPHA) -> list[Comparison]:
    """Bonferroni over the whole list: each comparison at two-sided level family_alpha / m."""
    m = max(1, len(comparisons))
    prob = 1.0 - family_alpha / (2.0 * m)
    for c in comparisons:
        c.judge(student_t_quantile(prob, max(1, c.dof)))
    return comparisons


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
        self.archs: list[str] = list(record["archs"])
        self.n_seeds = len(record["seeds"])

    def array(self, arch: str, key: str) -> np.ndarray:
        return np.asarray(self.record["measurements"][arch][key], dtype=np.float64)

    def grad_sq(self, arch: str, depth: int, name: str) -> np.ndarray:
        return np.asarray(self.record["measurements"][arch]["grad_sq"][str(depth)][name], dtype=np.float64)

    def gains(self, arch: str) -> BlockGains:
        eps = 0.0 if self.setup == "xiong" else (1e-6 if arch == "pre_rms" else 1e-5)
        return block_gains(self.setup, self.d, self.activation, eps)


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
    k = 1 if arch == "pre_rms" else 2
    return g.d_ff * g.activation_ms(s2) * (g.d - k) / (n_tokens * hidden_ms)


# ------------------------------------------------------------------ predictions


@dataclass(frozen=True)
class Prediction:
    name: str
    kind: str
    source: str
    statement: str
    archs: tuple[str, ...]
    setups: tuple[str, ...]

    def applies(self, setup: str, arch: str) -> bool:
        return setup in self.setups and arch in self.archs


XIONG = "Xiong et al. 2020, arXiv 2002.04745"
KEDIA = "Kedia et al. 2024 (DeepScaleLM) variance rules"
SUN = "Sun et al. 2025, arXiv 2502.05795"
PERI = "Peri-LN, arXiv 2502.02732"
HOMOG = "this project: positive homogeneity of the branches at initialisation"

LEMMA1 = Prediction("xiong.lemma1", "exact", XIONG + " Lemma 1 (GELU: " + KEDIA + ", mpmath integral)",
                    "E||act(W1 x)||^2 / d_ff = E[act(Z)^2], Z ~ N(0, d Var(W1) s_l^2), every layer",
                    ("post_ln", "pre_ln", "peri_ln", "lns", "pre_rms"), ("xiong", "standard"))
POST_SUM = Prediction("xiong.lemma2.post", "exact", XIONG + " Lemma 2 (standard setup: " + KEDIA + ")",
                      "Post-LN: E||x + FFN(x)||^2 / d = 1 + ffn_gain (3/2 in the proof setup), every layer",
                      ("post_ln",), ("xiong", "standard"))
PRE_BAND = Prediction("xiong.lemma2.pre", "band", XIONG + " Lemma 2 (standard setup: " + KEDIA + ")",
                      "Pre-LN: 1 + ffn_gain l <= E||h_l||^2 / d <= 1 + (ffn_gain + attn_max) l "
                      "((1 + l/2) .. (1 + 3l/2) in the proof setup)",
                      ("pre_ln", "pre_rms"), ("xiong", "standard"))
PERI_LINEAR = Prediction("peri.linear", "exact", PERI + " (value: each sublayer adds one normalised vector)",
                         "Peri-LN: E||h_l||^2 / d = 1 + 2 l", ("peri_ln",), ("xiong", "standard"))
LNS_HOMOG = Prediction("lns.homogeneity", "band", HOMOG + "; " + SUN + " (LNS definition)",
                       "LNS: 1 + ffn_gain H_l <= E||h_l||^2 / d <= 1 + (ffn_gain + attn_max) H_l (H_l harmonic)",
                       ("lns",), ("xiong", "standard"))
GRAD_POST = Prediction("meanfield.grad.post", "exact", XIONG + " Theorem 1 setting, mean-field evaluation",
                       "Post-LN: E||dL/dW2_L||^2 = d_ff E[act^2] (d-2) / (n (1 + ffn_gain))",
                       ("post_ln",), ("xiong", "standard"))
GRAD_PRE = Prediction("meanfield.grad.pre", "band", XIONG + " Theorem 1 setting, mean-field evaluation",
                      "Pre-LN/Pre-RMS/LNS: E||dL/dW2_L||^2 = d_ff E[act^2 s_L^2] (d-k) / (n m_L), "
                      "m_L in the hidden band",
                      ("pre_ln", "pre_rms", "lns"), ("xiong", "standard"))


@dataclass(frozen=True)
class ScalingLaw:
    """A law for a positive quantity known up to a constant: shape(d, L) -> (lo, hi)."""

    prediction: Prediction
    quantity: str  # "last_w2_grad" (sqrt of mean squared norm) or "final_hidden_ms"
    shape: Callable[..., tuple[float, float]]  # (arch, gains, d, L, k) -> (lo, hi)
    model_error_log: Callable[[int], float]  # per point, in log units
    at_least: bool = False  # the law is a lower bound: ratios and exponents may exceed it
    # For a law with one free parameter k beyond the constant: k from the reference point's
    # measured value and depth (fitted there, never at the judged points).
    calibrate: Callable[[float, int], float] | None = None


def _harmonic(n: int) -> float:
    return sum(1.0 / k for k in range(1, n + 1))


def _mf_grad_shape(arch, g, d, L, k=None):
    lo_m, hi_m = hidden_band(arch, g, L)
    k = 1 if arch == "pre_rms" else 2
    s2 = lns_scale2(L) if arch == "lns" else 1.0
    base = g.d_ff * g.activation_ms(s2) * (d - k)
    return math.sqrt(base / hi_m), math.sqrt(base / lo_m)


def _mf_post_shape(arch, g, d, L, k=None):
    v = math.sqrt(g.d_ff * g.activation_ms() * (d - 2) / (1 + g.ffn_gain))
    return v, v


SCALING_LAWS = (
    ScalingLaw(Prediction("xiong.thm1.pre", "scaling", XIONG + " Theorem 1, read as a scaling law",
                          "Pre-LN: ||dL/dW2_L||_F proportional to d sqrt(ln d / L)", ("pre_ln",),
                          ("xiong", "standard")),
               "last_w2_grad", lambda a, g, d, L, k=None: (d * math.sqrt(math.log(d) / L),) * 2,
               lambda d: 0.0),
    ScalingLaw(Prediction("xiong.thm1.post", "scaling", XIONG + " Theorem 1, read as a scaling law",
                          "Post-LN: ||dL/dW2_L||_F proportional to d sqrt(ln d), independent of L",
                          ("post_ln",), ("xiong", "standard")),
               "last_w2_grad", lambda a, g, d, L, k=None: (d * math.sqrt(math.log(d)),) * 2, lambda d: 0.0),
    ScalingLaw(Prediction("meanfield.grad.pre.scaling", "scaling", XIONG + " Lemma 2 band + Lemma 3 Jacobian",
                          "Pre-LN: ||dL/dW2_L||_F ~ sqrt(d (d-2) / (1 + c L)), c in [ffn_gain, ffn_gain + attn_max]",
                          ("pre_ln", "pre_rms", "lns"), ("xiong", "standard")),
               "last_w2_grad", _mf_grad_shape, lambda d: 0.5 * model_error_ratio_of_means(d)),
    ScalingLaw(Prediction("meanfield.grad.post.scaling", "scaling", XIONG + " Lemma 2 + Lemma 3 Jacobian",
                          "Post-LN: ||dL/dW2_L||_F ~ sqrt(d (d-2)), independent of L", ("post_ln",),
                          ("xiong", "standard")),
               "last_w2_grad", _mf_post_shape, lambda d: 0.5 * model_error_ratio_of_means(d)),
    ScalingLaw(Prediction("xiong.lemma2.pre.scaling", "scaling", XIONG + " Lemma 2 band, as a growth law",
                          "Pre-LN: E||h_L||^2 / d ~ 1 + c L, c in [ffn_gain, ffn_gain + attn_max]",
                          ("pre_ln", "pre_rms"), ("xiong", "standard")),
               "final_hidden_ms", lambda a, g, d, L, k=None: hidden_band(a, g, L), lambda d: 0.0),
    ScalingLaw(Prediction("sun.lns.recursion", "scaling",
                          SUN + " LNS recursion sigma_{l+1}^2 = sigma_l^2 (1 + 1/(sqrt(l) sigma_l))",
                          "LNS: E||h_L||^2 / d = L (linear growth)", ("lns",), ("xiong", "standard")),
               "final_hidden_ms", lambda a, g, d, L, k=None: (float(L), float(L)), lambda d: 0.0),
    ScalingLaw(Prediction("lns.homogeneity.scaling", "scaling", HOMOG,
                          "LNS: E||h_L||^2 / d ~ 1 + c H_L (logarithmic growth)", ("lns",), ("xiong", "standard")),
               "final_hidden_ms", lambda a, g, d, L, k=None: hidden_band(a, g, L), lambda d: 0.0),
    ScalingLaw(Prediction("sun.cod.recursion", "scaling", SUN + " Pre-LN recursion sigma_{l+1}^2 = sigma_l^2 (1 + k/sigma_l)",
                          "Pre-LN: E||h_L||^2 / d = (1 + k L / 2)^2 (the recursion's solution for sigma_0 = 1; "
                          "k fitted at the smallest depth)", ("pre_ln",), ("xiong", "standard")),
               "final_hidden_ms", lambda a, g, d, L, k=None: ((1.0 + k * L / 2.0) ** 2,) * 2, lambda d: 0.0,
               calibrate=lambda value, L: 2.0 * (math.sqrt(value) - 1.0) / L),
)

WRONG_FLAT_PRE = ScalingLaw(
    Prediction("wrong.pre.flat", "scaling", "deliberately wrong (for tests)",
               "Pre-LN last-layer W2 gradient independent of L", ("pre_ln",), ("xiong", "standard")),
    "last_w2_grad", _mf_post_shape, lambda d: 0.5 * model_error_ratio_of_means(d))

EXACT_AND_BAND = (LEMMA1, POST_SUM, PRE_BAND, PERI_LINEAR, LNS_HOMOG, GRAD_POST, GRAD_PRE)


def _cmp(p: Prediction, view: RecordView, arch: str, quantity: str, L, layer, est: Estimate,
         lower: float, upper: float, model_error: float) -> Comparison:
    return Comparison(p.name, p.kind, p.source, view.setup, arch, quantity, view.d, L, layer,
                      est.mean, est.se, est.n - 1, lower, upper, model_error)


def forward_and_gradient_comparisons(view: RecordView) -> list[Comparison]:
    """Exact and band predictions on one record. Hidden states are judged at the grid depths
    (the layers l = L of each depth in the record); the per-layer profile is plotted."""
    out: list[Comparison] = []
    for arch in view.archs:
        g = view.gains(arch)
        me_exact = model_error_exact(view.setup, view.d)
        hidden = view.array(arch, "hidden_ms")
        Lmax = hidden.shape[1] - 1
        if LEMMA1.applies(view.setup, arch):
            act = view.array(arch, "activation_ms")
            predicted = np.array([g.activation_ms(lns_scale2(l) if arch == "lns" else 1.0)
                                  for l in range(1, Lmax + 1)])
            est = estimate((act / predicted).mean(axis=1))  # ratio to prediction, averaged over layers
            out.append(_cmp(LEMMA1, view, arch, "activation_ms / predicted", None, None, est, 1.0, 1.0, me_exact))
        if POST_SUM.applies(view.setup, arch):
            est = estimate(view.array(arch, "residual_sum_ms").mean(axis=1))
            value = 1.0 + g.ffn_gain
            out.append(_cmp(POST_SUM, view, arch, "residual_sum_ms", None, None, est, value, value, me_exact * value))
        for L in view.depths:
            est = estimate(hidden[:, L])
            if PRE_BAND.applies(view.setup, arch) or LNS_HOMOG.applies(view.setup, arch):
                p = PRE_BAND if arch != "lns" else LNS_HOMOG
                lo, hi = hidden_band(arch, g, L)
                out.append(_cmp(p, view, arch, "hidden_ms", L, L, est, lo, hi, me_exact * hi))
            if PERI_LINEAR.applies(view.setup, arch):
                value = 1.0 + 2.0 * L
                out.append(_cmp(PERI_LINEAR, view, arch, "hidden_ms", L, L, est, value, value, me_exact * value))
            grad = estimate(view.grad_sq(arch, L, "w2")[:, L - 1])
            me_grad = model_error_ratio_of_means(view.d)
            if GRAD_POST.applies(view.setup, arch):
                value = last_w2_grad_sq(arch, g, L, view.n_tokens, 1.0 + g.ffn_gain)
                out.append(_cmp(GRAD_POST, view, arch, "last_w2_grad_sq", L, L, grad, value, value,
                                (me_grad + me_exact) * value))
            if GRAD_PRE.applies(view.setup, arch):
                lo_m, hi_m = hidden_band(arch, g, L)
                lo = last_w2_grad_sq(arch, g, L, view.n_tokens, hi_m)
                hi = last_w2_grad_sq(arch, g, L, view.n_tokens, lo_m)
                out.append(_cmp(GRAD_PRE, view, arch, "last_w2_grad_sq", L, L, grad, lo, hi,
                                (me_grad + me_exact) * hi))
    return out


@dataclass(frozen=True)
class Point:
    setup: str
    arch: str
    d: int
    L: int
    log_value: float
    log_se: float
    dof: int
    gains: BlockGains


def scaling_points(views: Iterable[RecordView], quantity: str) -> list[Point]:
    points = []
    for view in views:
        for arch in view.archs:
            for L in view.depths:
                if quantity == "last_w2_grad":
                    est = estimate(view.grad_sq(arch, L, "w2")[:, L - 1])
                    lv, ls = log_of_root_mean(est)
                else:
                    est = estimate(view.array(arch, "hidden_ms")[:, L])
                    lv, ls = log_of_mean(est)
                points.append(Point(view.setup, arch, view.d, L, lv, ls, est.n - 1, view.gains(arch)))
    return points


def scaling_comparisons(views: Sequence[RecordView], laws: Iterable[ScalingLaw] = SCALING_LAWS) -> list[Comparison]:
    """Per law, per (setup, arch): fit the constant at the reference point (smallest d, then
    smallest L), judge the log-ratio at every other point; and judge the fitted exponent in L
    (per d) against the law's exponent range over the same grid."""
    out: list[Comparison] = []
    cache = {q: scaling_points(views, q) for q in ("last_w2_grad", "final_hidden_ms")}
    for law in laws:
        p = law.prediction
        groups: dict[tuple[str, str], list[Point]] = {}
        for pt in cache[law.quantity]:
            if p.applies(pt.setup, pt.arch):
                groups.setdefault((pt.setup, pt.arch), []).append(pt)
        for (setup, arch), pts in groups.items():
            pts.sort(key=lambda q: (q.d, q.L))
            ref = pts[0]
            k = law.calibrate(math.exp(ref.log_value), ref.L) if law.calibrate else None
            ref_lo, ref_hi = (math.log(v) for v in law.shape(arch, ref.gains, ref.d, ref.L, k))
            for pt in pts[1:]:
                lo, hi = (math.log(v) for v in law.shape(arch, pt.gains, pt.d, pt.L, k))
                # Where the law gives a range (a band constant c), the point and the reference may
                # sit anywhere in their ranges: the guaranteed ratio range is [lo - ref_hi, hi - ref_lo].
                upper = math.inf if law.at_least else hi - ref_lo
                # measured minus predicted ratio moves with the reference's log value by -1, or,
                # when k is fitted there, by -d log shape(L, k(ref)) / d log ref (numerically)
                sensitivity = 1.0
                if law.calibrate:
                    h = 1e-6
                    k_up = law.calibrate(math.exp(ref.log_value + h), ref.L)
                    sensitivity = (math.log(law.shape(arch, pt.gains, pt.d, pt.L, k_up)[0]) - lo) / h
                out.append(Comparison(p.name, p.kind, p.source, setup, arch, f"log {law.quantity} ratio",
                                      pt.d, pt.L, None, pt.log_value - ref.log_value,
                                      math.hypot(pt.log_se, sensitivity * ref.log_se), min(pt.dof, ref.dof),
                                      lo - ref_hi, upper, law.model_error_log(pt.d) + law.model_error_log(ref.d)))
            for d in sorted({q.d for q in pts}):
                row = [q for q in pts if q.d == d]
                if len(row) < 2 or law.calibrate:  # a fitted k makes the slope depend on the ref
                    continue
                    continue
                w = ols_weights([math.log(q.L) for q in row])
                slope = float(np.dot(w, [q.log_value for q in row]))
                se = float(math.sqrt(np.sum((w * np.array([q.log_se for q in row])) ** 2)))
                logs = np.log(np.array([law.shape(arch, q.gains, q.d, q.L, k) for q in row]))
                # interval arithmetic: the extreme slopes when each point's log sits anywhere in
                # its range (a positive weight takes the low end for the minimum, and so on)
                low = float(np.sum(np.where(w > 0, w * logs[:, 0], w * logs[:, 1])))
                high = math.inf if law.at_least else float(np.sum(np.where(w > 0, w * logs[:, 1], w * logs[:, 0])))
                me = float(np.sum(np.abs(w))) * law.model_error_log(d)
                out.append(Comparison(p.name, p.kind, p.source, setup, arch, f"exponent of {law.quantity} in L",
                                      d, None, None, slope, se, min(q.dof for q in row), low, high, me))
    return out


def analyse(records: Sequence[dict], laws: Iterable[ScalingLaw] = SCALING_LAWS,
            family_alpha: float = FAMILY_ALPHA) -> list[Comparison]:
    views = [RecordView(r) for r in records]
    comparisons: list[Comparison] = []
    for view in views:
        comparisons += forward_and_gradient_comparisons(view)
    comparisons += scaling_comparisons(views, laws)
    return judge_all(comparisons, family_alpha)


def comparisons_to_json(comparisons: Sequence[Comparison]) -> list[dict]:
    rows = []
    for c in comparisons:
        row = asdict(c)
        row["tolerance"] = c.tolerance
        rows.append({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()})
    return rows


def verdict(comparisons: Sequence[Comparison]) -> str:
    return "pass" if comparisons and all(c.verdict == "PASS" for c in comparisons) else "fail"
