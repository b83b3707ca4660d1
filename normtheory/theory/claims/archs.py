"""Claims about the architectures added for issue 17 (Mix-LN, HybridNorm, NormFormer, nGPT,
QK-Norm) at initialisation: predictions from archs/derivations.py (sympy) and the recursion
(meanfield/recursion.py), each with a wrong variant (no torch here)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from normtheory.theory.archs import derivations as D
from normtheory.theory.archs.derivations import softmax_entropy_floor
from normtheory.theory.claims.core import Test
from normtheory.theory.claims.evidence import Evidence, estimate
from normtheory.theory.claims.meanfield import _exact, _label
from normtheory.theory.meanfield import constants as C
from normtheory.theory.meanfield import predictions as mf
from normtheory.theory.meanfield import recursion as R

FP32_SLACK = 2.0**-20  # relative: a handful of fp32 roundings in a logit or a norm


@lru_cache(maxsize=1)
def _derivations() -> dict:

    return {d.name: d for d in D.all_derivations()}


def mix_ln_tests(ev: Evidence, wrong: bool = False) -> list[Test]:
    """Mix-LN: E||h_L||²/d of the depth-L model (Post-LN for floor(L/4) blocks, then Pre-LN)
    from the recursion, which restarts the Pre-LN growth from the Post-LN state (mean square
    1, tokens already correlated). Wrong variant: the switch ignored (a Pre-LN stack)."""
    tests = []
    for view in ev.views_with("mix_ln"):
        for L in view.depths:
            m = R.forward("pre_ln" if wrong else "mix_ln", view.setup, view.d, L, view.n_tokens, gain=view.qk_gain).m[L]
            tests.append(_exact(_label(view, "mix_ln", L=L), "E||h_L||²/d", estimate(view.final_hidden("mix_ln", L)), m,
                                mf.model_error_exact(view.setup, view.d) * m))
    return tests


def hybrid_norm_tests(ev: Evidence, wrong: bool = False) -> list[Test]:
    """HybridNorm: E||h_l||²/d = 1 + ffn at every grid depth (sympy: hybrid_norm.fixed_point).
    Wrong variant: Post-Norm FFN as in Post-LN, N(y + FFN(y)): mean square 1."""
    d = _derivations()["hybrid_norm.fixed_point"]
    tests = []
    for view in ev.views_with("hybrid_norm"):
        ffn = view.gains("hybrid_norm").ffn_gain
        value = d.wrong_value(ffn=ffn) if wrong else d.value(ffn=ffn)
        for L in view.depths:
            tests.append(_exact(_label(view, "hybrid_norm", L=L), "E||h_L||²/d", estimate(view.final_hidden("hybrid_norm", L)),
                                value, mf.model_error_exact(view.setup, view.d) * value))
    return tests


def normformer_tests(ev: Evidence, wrong: bool = False) -> list[Test]:
    """NormFormer: E||h_L||²/d = 1 + L (1 + d_ff Var(W2)) (sympy: normformer.growth); wrong
    variant: the mid-FFN LayerNorm ignored, 1 + L (1 + ffn)."""
    d = _derivations()["normformer.growth"]
    tests = []
    for view in ev.views_with("normformer"):
        g = view.gains("normformer")
        r = 2.0 * g.d_ff / (g.d_ff + view.d)  # d_ff Var(W2), Xavier
        for L in view.depths:
            value = d.wrong_value(l=L, ffn=g.ffn_gain) if wrong else d.value(l=L, r=r)
            tests.append(_exact(_label(view, "normformer", L=L), "E||h_L||²/d", estimate(view.final_hidden("normformer", L)),
                                value, mf.model_error_exact(view.setup, view.d) * value))
    return tests


def ngpt_tests(ev: Evidence, wrong: bool = False) -> list[Test]:
    """nGPT: cos(h_L, h_0) = c^(2L), c = (1 - a)/sqrt((1 - a)² + a²), a = 0.05 (sympy:
    ngpt.cos_to_input), and ||h_l|| = 1 exactly. Wrong variant: c = 1 - a."""
    d = _derivations()["ngpt.cos_to_input"]
    alpha = C.NGPT_ALPHA_INIT
    tests = []
    for view in ev.views_with("ngpt"):
        if not view.has("ngpt", "hidden_cos0"):
            continue
        cos0 = view.array("ngpt", "hidden_cos0")
        for L in view.depths:
            value = d.wrong_value(alpha=alpha, k=2 * L) if wrong else d.value(alpha=alpha, k=2 * L)
            tests.append(_exact(_label(view, "ngpt", L=L), "cos(h_L, h_0)", estimate(cos0[:, L]), value, 0.0))
        if not wrong:
            unit = view.array("ngpt", "hidden_ms") * view.d
            worst = float(np.abs(unit - 1.0).max())
            tests.append(Test(_label(view, "ngpt"), "max | ||h_l||² - 1 |", worst, 0.0, 1, -math.inf,
                              4 * view.d * FP32_SLACK, relative=False))
    return tests


def qk_logit_tests(ev: Evidence, wrong: bool = False) -> list[Test]:
    """QK-Norm: every logit within sqrt(d_k) (gamma = 1; sympy: qk_norm.logit_bound), and so
    every softmax entropy above the floor H_min(n, sqrt(d_k)). Deterministic: se = 0, an fp32
    slack. Wrong variant: logits within 1 (cosines)."""

    d = _derivations()["qk_norm.logit_bound"]
    tests = []
    for view in ev.views_with("qk_norm", setups=("standard",)):
        if not view.has("qk_norm", "logit_max"):
            continue
        bound = d.wrong_value(gamma=1) if wrong else d.value(d_k=C.HEAD_DIM, gamma=1)
        worst = float(view.array("qk_norm", "logit_max").max())
        tests.append(Test(_label(view, "qk_norm"), "max |logit|", worst, 0.0, 1, -math.inf, bound * (1 + FP32_SLACK),
                          relative=False))
        if not wrong:
            floor = softmax_entropy_floor(view.n_tokens, bound)
            lowest = float(view.array("qk_norm", "entropy").min())
            tests.append(Test(_label(view, "qk_norm"), "min entropy (nats)", lowest, 0.0, 1, floor, math.inf,
                              relative=False))
    return tests


ENTROPY_ARCHS = ("pre_ln", "pre_rms", "qk_norm")


def entropy_tests(ev: Evidence, wrong: bool = False) -> list[Test]:
    """Mean softmax entropy of layer l against the table E[H] of softmax over n i.i.d.
    N(0, (1 - rho_l) g⁴) logits (recursion.attention_entropy), rho_l from the recursion; QK-norm
    fixes g = 1 whatever the W^Q, W^K scale, plain attention has g = qk_gain. Wrong variant
    (QK-norm only, and only when the run sharpened W^Q, W^K): QK-norm changes nothing, g =
    qk_gain. Model error: the table's Monte Carlo error, 2e-3 nats."""
    tests = []
    for view in ev.views_with("qk_norm", setups=("standard",)) if wrong else ev.views:
        if view.setup != "standard" or (wrong and view.qk_gain == 1.0):
            continue
        for arch in (a for a in view.archs if a in ENTROPY_ARCHS and (a == "qk_norm" or not wrong)):
            if not view.has(arch, "entropy"):
                continue
            gain = view.qk_gain if (wrong or arch != "qk_norm") else 1.0
            traj = R.forward(arch, "standard", view.d, max(view.depths), view.n_tokens, gain=view.qk_gain)
            entropy = view.array(arch, "entropy")
            for L in view.depths:
                value = R.attention_entropy(view.n_tokens, traj.attn_in_rho[L - 1], gain**2)
                tests.append(_exact(_label(view, arch, layer=L), "mean softmax entropy", estimate(entropy[:, L - 1]),
                                    value, 2e-3, relative=False))
    return tests
