"""Mean-field recursion with token correlation: the pre-asymptotic transient of depth growth.

Xiong et al.'s Lemma 2 bounds the Pre-LN hidden state between 1 + ffn·l and
1 + (ffn + attn_max)·l because attention's gain lies anywhere in [0, attn_max]. Which value
it takes depends on how correlated the tokens are: attention outputs a convex mix of values,
so tokens that are unrelated (correlation rho = 0) average out to 1/n of a value's mean
square, tokens that have become alike (rho -> 1) keep all of it. Residual branches add the
same attention vector to every token, so rho rises with depth and so does the per-layer gain;
the growth is linear only asymptotically. This module follows (q, c) per layer, q = E||h_i||²/d
and c = E<h_i, h_j>/d (i != j), in the large-d limit where every inner product concentrates:

* attention of the normalised tokens (correlation rho = c/q):
  uniform (xiong):  A = C = (1 + (n - 1) rho) / n          (exact: the mean of n vectors)
  softmax:          A = rho + (1 - rho) E[sum_j p_j²],   C = rho + (1 - rho) E[sum_j p_j p'_j]
  with the logits of a query over the keys i.i.d. N(0, sigma²), sigma² = (1 - rho) g⁴
  (g: the qk gain; 1 with QK-norm, which fixes ||q||² = ||k||² = d_k), two queries' logits
  correlated rho; the expectations by a seeded Monte Carlo with common random numbers
  (softmax_moments). LayerNorm Scaling multiplies q and k by 1/sqrt(l), so its logits shrink
  by 1/l: softmax attention is not positively homogeneous, only its value path is.
* FFN (ReLU, preactivation variance s²): E||f||²/d = ffn (the Xavier gain of block_gains);
  E<f_i, f_j>/d = ffn · 2 kappa(rho), kappa the arc-cosine kernel of degree 1 (Cho & Saul
  2009): E[ReLU(u) ReLU(v)] = s² (sqrt(1 - rho²) + (pi - arccos rho) rho) / (2 pi).
* a normaliser maps (q, c) to (1, c/q): centring by the feature mean is O(1/d) and ignored.
Cross terms between a branch and the stream vanish in expectation (flip the sign of W^V or
W2). What is neglected is O(1/d): fluctuations of rho and the centring; the claims that use
the recursion judge it with zero model error and report the MDE (docs/claims.md).

The same bookkeeping run backwards gives Post-LN's per-layer gradient in the xiong setup
(`post_ln_w2_profile`): through an LN whose input has mean square m the gradient's squared
norm is multiplied by (d - 2)/(d m) and its cross-token part by 1/m; through x + FFN(x) the
squared norm gains ffn (backward gain = forward gain for Xavier weights), the cross part
2 ffn P(both ReLUs on), P = 1/4 + arcsin(rho)/(2 pi); through uniform attention every
token's gradient gains the token-mean gradient, sum over tokens (gamma + (n - 1) chi)/n.
No closed form is claimed for the standard setup's backward pass (score-path gradients).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from normtheory.theory.meanfield import constants as C

SOFTMAX_SAMPLES = 2**14


def kappa(rho: float) -> float:
    """E[ReLU(u) ReLU(v)] / s² for unit-correlation-rho Gaussians of variance s² (1/2 at rho = 1)."""
    rho = min(1.0, max(-1.0, rho))
    return (math.sqrt(1.0 - rho * rho) + (math.pi - math.acos(rho)) * rho) / (2.0 * math.pi)


def both_active(rho: float) -> float:
    """P(u > 0, v > 0) for standard Gaussians of correlation rho (1/2 at rho = 1)."""
    rho = min(1.0, max(-1.0, rho))
    return 0.25 + math.asin(rho) / (2.0 * math.pi)


def centred_relu_correlation(rho: float) -> float:
    """Correlation of ReLU(u) - E ReLU and ReLU(v) - E ReLU (NormFormer's mid-FFN LayerNorm
    centres the activations by their feature mean, which concentrates on E ReLU)."""
    mean2 = 1.0 / (2.0 * math.pi)
    return (kappa(rho) - mean2) / (0.5 - mean2)


@lru_cache(maxsize=8)
def _common_normals(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The same normal draws for every (sigma, rho): the moments are smooth in both, and the
    recursion is deterministic."""
    rng = np.random.default_rng([seed, n])
    return rng.standard_normal((SOFTMAX_SAMPLES, n)), rng.standard_normal((SOFTMAX_SAMPLES, n))


def _softmax(a: np.ndarray) -> np.ndarray:
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=1, keepdims=True)


@lru_cache(maxsize=200_000)
def softmax_moments(n: int, sigma: float, rho: float) -> tuple[float, float, float]:
    """E[sum_j p_j²], E[sum_j p_j p'_j] and E[entropy] of softmax over n i.i.d. N(0, sigma²)
    logits, p' the softmax of a second query whose logits are correlated rho with p's; by a
    seeded Monte Carlo over SOFTMAX_SAMPLES draws (relative SE below 1e-3). Callers round
    sigma and rho (to 1e-4) so that the cache serves a recursion."""
    z1, z2 = _common_normals(n)
    p = _softmax(sigma * z1)
    q = _softmax(sigma * (rho * z1 + math.sqrt(max(0.0, 1.0 - rho * rho)) * z2))
    entropy = -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=1).mean()
    return float((p * p).sum(axis=1).mean()), float((p * q).sum(axis=1).mean()), float(entropy)


def logit_std(rho: float, logit_scale: float) -> float:
    """Std of one query's logits across keys: (1 - rho) of the keys' variance survives the
    softmax's shift invariance; logit_scale = g² for W^Q, W^K of gain g (1 with QK-norm),
    times 1/l under LayerNorm Scaling (q and k each scaled by 1/sqrt(l))."""
    return math.sqrt(max(0.0, 1.0 - rho)) * logit_scale


def attention_gains(setup: str, n: int, rho: float, logit_scale: float = 1.0) -> tuple[float, float]:
    """(A, C): E||a_i||²/d and E<a_i, a_j>/d of attention over normalised tokens of
    correlation rho (value and output projections of Xavier gain 1)."""
    rho = min(1.0, max(0.0, rho))
    if setup == "xiong":
        value = (1.0 + (n - 1) * rho) / n
        return value, value
    sum_p2, cross, _ = softmax_moments(n, round(logit_std(rho, logit_scale), 4), round(rho, 4))
    return rho + (1.0 - rho) * sum_p2, rho + (1.0 - rho) * cross


def attention_entropy(n: int, rho: float, logit_scale: float = 1.0) -> float:
    """Mean softmax entropy (nats) of one query over n keys of correlation rho."""
    rho = min(1.0, max(0.0, rho))
    return softmax_moments(n, round(logit_std(rho, logit_scale), 4), round(rho, 4))[2]


def ffn_gain(setup: str, d: int) -> float:
    """E||FFN(x)||²/d for ||x||² = d, ReLU, Xavier: d_ff Var(W2) · E[ReLU(Z)²], Var Z = d Var(W1)."""
    f = C.d_ff(setup, d)
    return f * (2.0 / (f + d)) * (d * 2.0 / (d + f)) / 2.0


@dataclass
class Trajectory:
    """Per layer l = 0..L: hidden mean square m[l] and token correlation rho[l] of the stream;
    attn_in_rho[l-1], ffn_in_rho[l-1]: the correlation of block l's attention and FFN inputs.
    `forward` caches its results: treat a Trajectory as read-only."""

    m: list[float] = field(default_factory=list)
    rho: list[float] = field(default_factory=list)
    ffn_in_rho: list[float] = field(default_factory=list)
    attn_in_rho: list[float] = field(default_factory=list)


def _pre_block(q, c, setup, n, ffn, scale2, logit_scale, out):
    rho = c / q
    out.attn_in_rho.append(rho)
    a, cross = attention_gains(setup, n, rho, logit_scale * scale2)  # LNS scales q and k by 1/sqrt(l)
    q, c = q + a * scale2, c + cross * scale2
    rho = c / q
    out.ffn_in_rho.append(rho)
    return q + ffn * scale2, c + ffn * 2.0 * kappa(rho) * scale2


def _post_block(q, c, setup, n, ffn, logit_scale, out):
    rho = c / q
    out.attn_in_rho.append(rho)
    a, cross = attention_gains(setup, n, rho, logit_scale)
    rho = (c + cross) / (q + a)  # LN(x + Attn(x))
    out.ffn_in_rho.append(rho)
    return 1.0, (rho + ffn * 2.0 * kappa(rho)) / (1.0 + ffn)  # LN(x + FFN(x))


def _peri_block(q, c, setup, n, ffn, logit_scale, out, *, w2_gain: float | None = None):
    """Peri-LN (w2_gain None: the FFN output is LayerNorm'd, mean square 1, correlation of
    ReLU outputs 2 kappa) or NormFormer (w2_gain = d_ff Var(W2): W2 reads the LayerNorm'd,
    hence centred, activation of mean square 1)."""
    rho = c / q
    out.attn_in_rho.append(rho)
    a, cross = attention_gains(setup, n, rho, logit_scale)
    q, c = q + 1.0, c + cross / a  # an LN'd branch adds mean square 1 and its correlation C/A
    rho = c / q
    out.ffn_in_rho.append(rho)
    if w2_gain is None:
        return q + 1.0, c + 2.0 * kappa(rho)
    return q + w2_gain, c + w2_gain * centred_relu_correlation(rho)


def _hybrid_block(q, c, setup, n, ffn, out):
    rho = c / q
    out.attn_in_rho.append(rho)
    a, cross = attention_gains(setup, n, rho, 1.0)  # q, k, v normalised: the stream's scale drops out
    rho = (c + cross) / (q + a)  # y = N(h + Attn)
    out.ffn_in_rho.append(rho)
    return 1.0 + ffn, rho + ffn * 2.0 * kappa(rho)


RECURSION_ARCHS = ("pre_ln", "pre_rms", "qk_norm", "lns", "post_ln", "peri_ln", "normformer", "hybrid_norm", "mix_ln")


@lru_cache(maxsize=256)
def forward(arch: str, setup: str, d: int, depth: int, n: int, *, gain: float = 1.0,
            post_layers: int | None = None) -> Trajectory:
    """The recursion for one model of `depth` blocks, from i.i.d. N(0, 1) tokens (q = 1, c = 0).
    gain: W^Q, W^K scale (QK-norm and HybridNorm are invariant to it). post_layers: Mix-LN's
    number of Post-LN blocks (default floor(0.25 depth))."""
    if arch not in RECURSION_ARCHS:
        raise ValueError(f"no recursion for {arch!r}; one of {RECURSION_ARCHS}")
    ffn = ffn_gain(setup, d)
    w2_gain = 2.0 * C.d_ff(setup, d) / (C.d_ff(setup, d) + d)
    mix_post = int(math.floor(C.MIX_LN_POST_FRACTION * depth)) if post_layers is None else post_layers
    logit_scale = 1.0 if arch == "qk_norm" else gain**2  # QK-norm: ||q||² = ||k||² = d_k whatever W^Q, W^K
    q, c = 1.0, 0.0
    out = Trajectory(m=[q], rho=[c])
    for layer in range(1, depth + 1):
        if arch == "post_ln" or (arch == "mix_ln" and layer <= mix_post):
            q, c = _post_block(q, c, setup, n, ffn, logit_scale, out)
        elif arch == "peri_ln":
            q, c = _peri_block(q, c, setup, n, ffn, logit_scale, out)
        elif arch == "normformer":
            q, c = _peri_block(q, c, setup, n, ffn, logit_scale, out, w2_gain=w2_gain)
        elif arch == "hybrid_norm":
            q, c = _hybrid_block(q, c, setup, n, ffn, out)
        else:
            scale2 = 1.0 / layer if arch == "lns" else 1.0
            q, c = _pre_block(q, c, setup, n, ffn, scale2, logit_scale, out)
        out.m.append(q)
        out.rho.append(c / q)
    return out


def last_w2_grad_sq(setup: str, d: int, n: int, final_ms: float, *, k: int = 2, act_ms: float | None = None) -> float:
    """E||dL/dW2 of the last block||_F² for the token readout: d_ff E[act²] (d - k) / (n m_L)
    (meanfield/predictions.last_w2_grad_sq; k = 2 for LayerNorm, 1 for RMSNorm)."""
    f = C.d_ff(setup, d)
    act = ffn_gain(setup, d) / (f * 2.0 / (f + d)) if act_ms is None else act_ms
    return f * act * (d - k) / (n * final_ms)


def post_ln_w2_profile(d: int, depth: int, n: int) -> np.ndarray:
    """Post-LN, xiong setup, token readout: E||dL/dW2_l||_F² for l = 1..depth (module docstring)."""
    forward_pass = forward("post_ln", "xiong", d, depth, n)
    ffn = ffn_gain("xiong", d)
    act_scale = C.d_ff("xiong", d) * (d * 2.0 / (d + C.d_ff("xiong", d)))  # d_ff times the preactivation variance
    gamma, chi = d / n**2, 0.0  # ||dL/dout_i||² = ||u_i||²/n², independent tokens
    profile = []
    for layer in reversed(range(depth)):
        rho_attn, rho_ffn = forward_pass.attn_in_rho[layer], forward_pass.ffn_in_rho[layer]
        m_ffn = 1.0 + ffn
        gamma, chi = gamma * (d - 2) / (d * m_ffn), chi / m_ffn
        profile.append(n * act_scale / 2.0 * gamma + n * (n - 1) * act_scale * kappa(rho_ffn) * chi)
        gamma, chi = gamma * (1.0 + ffn), chi * (1.0 + 2.0 * ffn * both_active(rho_ffn))
        a, _ = attention_gains("xiong", n, rho_attn)
        m_attn = 1.0 + a
        gamma, chi = gamma * (d - 2) / (d * m_attn), chi / m_attn
        shared = (gamma + (n - 1) * chi) / n
        gamma, chi = gamma + shared, chi + shared
    return np.array(profile[::-1])


def ngpt_cos_to_input(alpha: float, sublayers: int) -> float:
    """nGPT at initialisation: cos(h_l, h_0) after `sublayers` steps h <- Norm(h + alpha (b - h))
    with every branch direction b orthogonal to h and to the earlier path (large d):
    each step keeps the component along h_0 scaled by (1 - alpha)/sqrt((1 - alpha)² + alpha²)
    (archs/derivations.py derives it with sympy)."""
    return ((1.0 - alpha) / math.sqrt((1.0 - alpha) ** 2 + alpha**2)) ** sublayers
