"""Mean-field predictions for Pre-Lp Transformers at initialisation (Xiong et al.'s setup).

Claim. In the `xiong` setup (meanfield/montecarlo.py: uniform attention, Xavier weights, no biases,
ReLU FFN, eps = 0), conditional on every earlier layer, each block's branch output is x·W
with W independent of x, so its coordinates are i.i.d. N(0, s²) with a random scale s. By
induction every hidden token h_l has i.i.d. Gaussian coordinates given the scales. The
Lp normaliser's output y = h/M_p(h) is scale invariant, so its shape statistics are those of
a standard Gaussian vector g ∈ R^d:
    c_p(d) = E[‖y‖²/d] = E[m₂(g)/M_p(g)²]          (= 1 for LayerNorm-free RMSNorm, p = 2)
Branches are positively homogeneous of degree 1 in their input (ReLU, the value path), and
the ReLU FFN's gain is linear in the input's mean square, so Xiong's Lemma 2 carries over
with every branch gain multiplied by c_p:
    1 + L·c_p·ffn ≤ E‖h_L‖²/d ≤ 1 + L·c_p·(ffn + attn_max)   (meanfield.hidden_band with s² = c_p).
For large d, c_p → M₂/M_p^(2/p), M_k = E|g|^k: π/2 (p = 1), 1.223 (p = 1.5), 1 (p = 2), 0.732
(p = 3), 1/√3 (p = 4); at p = inf, c_∞(d) = E[m₂/max g²] ≈ 1/(2 ln d) → 0. So smaller p
grows the residual stream faster, larger p slower; Pre-LN and Pre-RMSNorm have c = 1.

Last block's W2 gradient (loss (1/n)Σ⟨u_i, out_i⟩, meanfield.last_w2_grad_sq): the final
normaliser's Jacobian (theory/lp/conditioning.py) has ‖J‖_F² = (d − 2 + ‖y‖²‖v‖²)/N² at eps = 0, and
N² = m₂(h)/(‖y‖²/d), so E‖dW2‖² ≈ d_ff·E[act²](c_p)·j_p(d)/(n·E‖h_L‖²/d) with
j_p(d) = E[(d − 2 + ‖y‖²‖v‖²)·‖y‖²/d] (= d − 1 at p = 2). This is a ratio of means
(approximate, like meanfield's), reported next to the measurement, not judged.
c_p(d) and j_p(d) are Gaussian expectations without a closed form at finite d: they are
computed by Monte Carlo over 2^16 seeded Gaussian vectors, with their standard errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from normtheory.theory.lp import conditioning as lp
from normtheory.theory.meanfield.predictions import BlockGains, estimate, student_t_quantile


@dataclass(frozen=True)
class ShapeConstants:
    p: float
    d: int
    c: float  # E[‖y‖²/d]
    c_se: float
    j: float  # E[(d − 2 + ‖y‖²‖v‖²)·‖y‖²/d]
    j_se: float


def shape_constants(p: float, d: int, samples: int = 2**16, seed: int = 0) -> ShapeConstants:
    rng = np.random.default_rng([seed, d, 0 if math.isinf(p) else int(p * 1000)])
    cs, js = [], []
    for _ in range(max(1, samples // 4096)):
        g = rng.standard_normal((4096, d))
        N = lp.power_mean_norm(g, p, 0.0)
        y = g / N[:, None]
        y_sq = (y * y).sum(axis=1)
        upper, _, _ = lp.rank_two_singular_values(g, p, 0.0)
        cs.append(y_sq / d)
        js.append((d - 2 + upper**2) * y_sq / d)  # σ₊² = ‖y‖²‖v‖² at eps = 0
    c, j = np.concatenate(cs), np.concatenate(js)
    n = c.size
    return ShapeConstants(p, d, float(c.mean()), float(c.std(ddof=1) / math.sqrt(n)),
                          float(j.mean()), float(j.std(ddof=1) / math.sqrt(n)))


def large_d_shape_constant(p: float) -> float:
    """lim_{d→∞} c_p(d) = M₂/M_p^(2/p) (0 at p = inf)."""
    if math.isinf(p):
        return 0.0
    return lp.gaussian_abs_moment(2) / lp.gaussian_abs_moment(p) ** (2 / p)


def hidden_band_lp(g: BlockGains, depth: int, c: float) -> tuple[float, float]:
    """Band for E‖h_depth‖²/d: each block adds c·ffn and up to c·attn_max (ReLU, xiong)."""
    return 1.0 + depth * g.ffn_gain_scaled(c), 1.0 + depth * (g.ffn_gain_scaled(c) + g.attention_gain_max * c)


def last_w2_grad_sq_lp(g: BlockGains, n_tokens: int, hidden_ms: float, shape: ShapeConstants) -> float:
    return g.d_ff * g.activation_ms(shape.c) * shape.j / (n_tokens * hidden_ms)


@dataclass(frozen=True)
class BandCheck:
    arch: str
    depth: int
    measured: float
    se: float
    lower: float
    upper: float
    tolerance: float
    passed: bool


def judge_hidden(arch: str, hidden_ms: np.ndarray, g: BlockGains, shape: ShapeConstants, depths,
                 n_checks: int, family_alpha: float = 0.05) -> list[BandCheck]:
    """Measured E‖h_L‖²/d (seeds × layers) against the band, tolerance t·SE on each edge plus
    the band's own uncertainty (3 standard errors of c_p, scaled by L·gain) and fp32's model
    error 2d·u. t is Student's at a Bonferroni level over `n_checks` comparisons."""
    seeds = hidden_ms.shape[0]
    t = student_t_quantile(1 - family_alpha / (2 * n_checks), seeds - 1)
    checks = []
    for depth in depths:
        est = estimate(hidden_ms[:, depth])
        lower, upper = hidden_band_lp(g, depth, shape.c)
        per_c = (upper - 1.0) / shape.c
        tol = t * est.se + 3 * shape.c_se * per_c + 2 * g.d * 2.0**-24 * est.mean
        checks.append(BandCheck(arch, depth, est.mean, est.se, lower, upper, tol,
                                lower - tol <= est.mean <= upper + tol))
    return checks
