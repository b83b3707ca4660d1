"""The registry: every claim the project judges, with its source, what the source says, how it
is judged, and the expected verdict with its evidence (docs/claims.md renders this table with
the numbers). Wrong variants are registered next to the claim they falsify.

Trained-model claims (kind "trained") are judged on evidence another command writes (the
trained-model probe of issue 17 item 5, normtheory/theory/training/): a JSON file of schema
`normtheory.trained-evidence/1`, `{"schema": ..., "claims": {claim_id: {"tests": [Test
fields...]}}}`, passed to `normtheory meanfield --trained FILE`. `register_trained_claim`
adds one; until evidence exists they are INCONCLUSIVE, which is their registered expectation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from normtheory.theory.claims import archs as A
from normtheory.theory.claims import meanfield as M
from normtheory.theory.claims.core import Claim, Test
from normtheory.theory.claims.evidence import TRAINED_SCHEMA, Evidence

H100 = "H100 sweep (tests/data/meanfield: d 512, 1024; L 6..96; 8 seeds; tokens 16, token readout)"
CPU = "CPU runs in tests/test_meanfield_claims.py"


def _wrong(builder: Callable[..., list[Test]]) -> Callable[[Evidence], list[Test]]:
    """The comparisons of a claim's wrong variant. `builder` is the claim's own `tests`, one of
    meanfield.py's or archs.py's builders, which also take `wrong=` (a Claim's `tests` field
    only promises the evidence argument, hence the `...`)."""
    return lambda ev: builder(ev, wrong=True)


def _pair(claim: Claim, wrong_says: str, wrong_evidence: str) -> list[Claim]:
    """The claim and its deliberately wrong variant (same comparisons, expected REFUTED)."""
    variant = Claim(f"{claim.id}.wrong", claim.source, wrong_says, claim.kind, claim.judged, "refuted",
                    wrong_evidence, _wrong(claim.tests), claim.resolution, variant_of=claim.id, setting=claim.setting)
    return [claim, variant]


XIONG_CLAIMS = [
    *_pair(Claim("xiong.lemma1", M.XIONG + ", Lemma 1", "X ~ N(0, s² I_d) => E||ReLU(X)||² = s² d / 2",
                 "exact", "measured E||ReLU(W1 x)||²/d_ff over the Gaussian prediction, mean over layers; "
                 "ratio 1 within t·SE + fp32/eps error", "holds", H100 + ": ratios 0.998..1.003",
                 M.lemma1_tests, 0.05, setting="every arch whose FFN reads a normalised vector"),
           "the ReLU variance s²(pi - 1)/(2 pi) taken for the second moment (ratio pi/(pi - 1))",
           H100 + ": ratios 1.00 vs 1.47"),
    *_pair(Claim("xiong.lemma2.post", M.XIONG + ", Lemma 2", "Post-LN: E||x + FFN(x)||² = 3d/2 before the block's LN "
                 "(standard setup: 1 + ffn, Kedia et al. 2024's rules)", "exact",
                 "mean over layers of the measured mean square, t·SE + fp32/eps error", "holds",
                 H100 + ": 1.5057 +- 0.0026 (xiong, d 512)", M.lemma2_post_tests, 0.05, setting="post_ln"),
           "FFN adds its variance, not its second moment: 1 + ffn (pi - 1)/pi", H100),
    *_pair(Claim("xiong.lemma2.pre", M.XIONG + ", Lemma 2", "Pre-LN: (1 + l/2) d <= E||x_l||² <= (1 + 3l/2) d "
                 "(standard: 1 + ffn l .. 1 + (ffn + attn_max) l)", "band",
                 "band edges widened by t·SE + fp32/eps error", "holds", H100 + ": inside at every depth",
                 M.lemma2_pre_tests, 0.10, setting="pre_ln, pre_rms, qk_norm"),
           "attention adds nothing (W^Q = W^K = 0): the lower edge 1 + l/2 as the value", H100),
    *_pair(Claim("xiong.thm1.pre.bound", M.XIONG + ", Theorem 1",
                 "Pre-LN: ||dL/dW^{2,L}||_F = O(d sqrt(ln d / L)) with high probability (an upper bound)",
                 "upper bound w.h.p.", "one-sided: the exponent in L over the deeper half of the grid <= -1/2 + "
                 "protocol budget; the growth with d between widths <= d sqrt(ln d)'s", "holds",
                 H100 + ": exponents -0.54 .. -0.57 below -1/2; width ratios below 2.11",
                 M.thm1_pre_bound_tests, 0.25, setting="pre_ln"),
           "read as O(d sqrt(ln d) / L): exponent <= -1", H100 + ": exponents -0.56 > -1"),
    *_pair(Claim("xiong.thm1.post.bound", M.XIONG + ", Theorem 1",
                 "Post-LN: ||dL/dW^{2,L}||_F = O(d sqrt(ln d)) with high probability, independent of L",
                 "upper bound w.h.p.", "one-sided: the exponent in L over the deeper half of the grid <= 0 + budget; "
                 "width growth <= d sqrt(ln d)'s", "holds", H100 + ": exponents -0.007 .. +0.002",
                 M.thm1_post_bound_tests, 0.25, setting="post_ln"),
           "Post-LN's last-layer gradient decays like Pre-LN's (exponent <= -1/2)", H100),
    *_pair(Claim("xiong.thm1.pre.asymptotic", M.XIONG + ", Theorem 1, read as an asymptotic law",
                 "Pre-LN: ||dL/dW^{2,L}|| ~ L^(-1/2) as L -> infinity at fixed d", "asymptotic law",
                 "the measured gradient ratios to the smallest depth against the token-correlation recursion "
                 "(whose per-layer gain rises to ffn + attn_max, so m_L ~ L and the law is reached "
                 "asymptotically; no fitted constant); error: the ratio-of-means bias of a log ratio, 11/d",
                 "holds", H100 + ": every ratio within its MDE (0.12..0.27); resolution 0.15 = half the 0.29..0.35 "
                 "by which the pure power law and the recursion differ at L 96 vs 6", M.thm1_asymptotic_tests, 0.15,
                 setting="pre_ln, token readout"),
           "L^(-1/2) from the smallest depth on (no transient: the issue's 'rejected in 3 of 4 settings')",
           H100 + ": local exponents -0.56 at L 6..48 drift towards -0.5"),
]

PROJECT_CLAIMS = [
    *_pair(Claim("meanfield.grad.conditional", M.PROJECT + "; Xiong et al.'s Lemma 3 Jacobian",
                 "E||dL/dW2_L||² = d_ff E[act²] (d - k) / (n m_L) given the measured m_L (k = 2 LN, 1 RMSNorm; "
                 "m_L: the final normaliser's input mean square)", "conditional",
                 "per seed, with the seed's own m_L; mean ratio 1 within t·SE + 11/d (ratio of means) + fp32/eps",
                 "holds", H100 + ": 61.1 +- 2.4 measured vs 61.7 predicted at d 512, L 96",
                 M.conditional_tests, 0.20, setting="pre_ln, pre_rms, qk_norm, lns, post_ln, mix_ln, hybrid_norm, "
                 "normformer; token readout"),
           "off by one layer: m_(L-1) for m_L (19% off at L = 6, 9% at L = 12 in the proof setup: the resolution "
           "0.2 is that error)", H100 + ": rejected at L = 6"),
    *_pair(Claim("meanfield.pre.transient", M.PROJECT, "Pre-LN: E||h_L||²/d follows the token-correlation recursion "
                 "(meanfield/recursion.py; large-d limit)", "exact",
                 "per depth, zero model error beyond fp32/eps (finite-d terms O(1/d) neglected: the MDE bounds them)",
                 "holds", H100 + ": 132.3 +- 2.5 vs 132.4 (xiong, d 512, L 96)", M.transient_tests, 0.05,
                 setting="pre_ln, pre_rms, qk_norm"),
           "tokens stay uncorrelated: every block adds ffn + A(rho = 0), linear from the start",
           H100 + ": per-layer gain rises from 1.0 to 1.5"),
    Claim("sun.lns.recursion", M.SUN + ", LayerNorm Scaling recursion", "LNS: sigma²_{l+1} = sigma²_l (1 + 1/(sqrt(l) "
          "sigma_l)), so E||h_L||²/d = L (linear growth)", "asymptotic law",
          "log ratios to the smallest depth against log(L/L_ref) (constant fitted there)", "refuted",
          H100 + ": growth exponent 0.24 .. 0.26, not 1", M.sun_lns_tests, 0.10, setting="lns"),
    Claim("lns.growth", M.PROJECT + "; " + M.SUN + " (LNS definition)", "LNS at initialisation: branches are "
          "positively homogeneous, so scaling their input by 1/sqrt(l) scales their gain by 1/l: E||h_L||²/d follows "
          "the recursion with gains / l (growth ~ ln L)", "exact", "per depth, zero model error beyond fp32/eps",
          "holds", H100, M.lns_growth_tests, 0.05, setting="lns"),
    Claim("sun.cod.recursion", M.SUN + ", Pre-LN variance recursion", "Pre-LN: sigma²_{l+1} = sigma²_l (1 + k/sigma_l), "
          "E||h_L||²/d = (1 + k L/2)²", "asymptotic law", "log ratios to the smallest depth, k calibrated there",
          "refuted", H100 + ": overshoots at L 24..96", M.sun_cod_tests, 0.10, setting="pre_ln"),
    *_pair(Claim("peri.linear", M.PERI, "Peri-LN: variance grows linearly, Var(x_{l+1}) = Var(x_l) + const; value: "
                 "each sublayer adds one normalised vector, E||h_l||²/d = 1 + 2l (sympy: peri.growth)", "exact",
                 "per depth, t·SE + fp32/eps", "holds", H100 + ": 191.3 +- 2.0 vs 193 at L 96",
                 M.peri_tests, 0.10, setting="peri_ln"),
           "one normalised vector per block: 1 + l", H100),
    *_pair(Claim("meanfield.post.profile", M.PROJECT + "; " + M.XIONG + " (Post-LN lower layers)",
                 "Post-LN, proof setup: E||dW2_l||² of every layer l follows the backward token-correlation recursion "
                 "(nearly flat: the top layer 1.16x the first at d 512, L 96)", "exact",
                 "every layer of the deepest model, t·SE + 11/d", "holds", H100, M.post_profile_tests, 0.30,
                 setting="post_ln, xiong setup, token readout"),
           "LayerNorm Jacobians compound and the branches add nothing backwards", H100),
    Claim("xiong.post.toward_output", M.XIONG + ", abstract and Fig. 3", "Post-LN at initialisation: the gradients of the "
          "parameters near the output layer are large (larger than the lower layers')", "bound",
          "one-sided: log(E||dW2_L||² / E||dW2_1||²) >= 0 on the deepest model, per-seed pairs (delta method)",
          "refuted", H100 + ": -0.86 +- 0.34 at d 1024 (p 0.019 <= Holm's 0.025), -0.62 +- 0.56 at d 512; marginal: "
          "a CPU replicate (d 128, L 24, seeds 32..63) gives -0.13 +- 0.13, and per-seed ratios are heavy-tailed. "
          "This harness's readout is a random linear one, not the paper's loss",
          M.post_direction_tests, 0.50, setting="post_ln, standard setup (the paper's Fig. 3 is a softmax Transformer)"),
]

ARCH_CLAIMS = [
    *_pair(Claim("mix_ln.init", "Li et al. 2024 (Mix-LN), arXiv 2412.13795: Post-LN in the early layers, Pre-LN in the "
                 "deeper ones", "at initialisation: E||h_L||²/d follows the recursion restarted from the Post-LN state "
                 "(mean square 1, tokens correlated) after floor(L/4) Post-LN blocks", "exact",
                 "per depth (each depth its own model), zero model error beyond fp32/eps", "holds", CPU,
                 A.mix_ln_tests, 0.10, setting="mix_ln"),
           "the switch ignored: a Pre-LN stack of L blocks", CPU),
    *_pair(Claim("hybrid_norm.init", "Zhuo et al. 2025 (HybridNorm), arXiv 2503.04598: QKV normalisation in attention, "
                 "Post-Norm FFN", "at initialisation: E||h_l||²/d = 1 + ffn at every layer (sympy: "
                 "hybrid_norm.fixed_point)", "exact", "per depth, t·SE + fp32/eps", "holds", CPU,
                 A.hybrid_norm_tests, 0.10, setting="hybrid_norm"),
           "Post-Norm FFN as in Post-LN, N(y + FFN(y)): mean square 1", CPU),
    *_pair(Claim("normformer.init", "Shleifer et al. 2021 (NormFormer), arXiv 2110.09456: LN after attention, head-wise "
                 "scaling, LN after the first FFN layer", "at initialisation: E||h_L||²/d = 1 + L (1 + d_ff Var(W2)) "
                 "(sympy: normformer.growth)", "exact", "per depth, t·SE + fp32/eps", "holds", CPU,
                 A.normformer_tests, 0.10, setting="normformer"),
           "the mid-FFN LayerNorm ignored: 1 + L (1 + ffn)", CPU),
    *_pair(Claim("ngpt.init", "Loshchilov et al. 2024 (nGPT), arXiv 2410.01131: hidden states on the unit sphere, "
                 "each layer a displacement of eigen learning rate alpha", "at initialisation (alpha = 0.05): "
                 "||h_l|| = 1 and cos(h_L, h_0) = c^(2L), c = (1 - a)/sqrt((1 - a)² + a²) (sympy: ngpt.cos_to_input)",
                 "exact", "per depth, zero model error (branch directions orthogonal at large d: O(1/d) neglected)",
                 "holds", CPU, A.ngpt_tests, 0.02, setting="ngpt, standard setup"),
           "c = 1 - alpha (interpolation weight read as the cosine)", CPU),
    *_pair(Claim("qk_norm.logit_bound", "Henry et al. 2020 (QK-Norm), arXiv 2010.04245; RMSNorm on q, k",
                 "|logit| <= sqrt(d_k) max|gamma_q gamma_k| (sympy: qk_norm.logit_bound), so the softmax entropy is at "
                 "least H_min(n, sqrt(d_k)) (2.9e-5 nats at n 16, d_k 64: the floor is nearly vacuous)", "bound",
                 "deterministic: every recorded logit and entropy, fp32 slack 2^-20", "holds", CPU,
                 A.qk_logit_tests, 0.5, setting="qk_norm, standard setup"),
           "|logit| <= 1 (QK-norm read as cosine similarity)", CPU),
    *_pair(Claim("attention.entropy", M.PROJECT, "mean softmax entropy per layer = E[H] of softmax over n i.i.d. "
                 "N(0, (1 - rho_l) g⁴) logits (g: W^Q, W^K gain; QK-norm fixes g = 1)", "exact",
                 "per layer at the grid depths, the table's Monte Carlo error 2e-3 nats", "holds", CPU,
                 A.entropy_tests, 0.10, setting="pre_ln, pre_rms, qk_norm, standard setup"),
           "QK-norm leaves the entropy as plain attention's at the same gain (judged only when --qk-gain != 1)", CPU),
]


def _trained_test(fields: dict[str, Any]) -> Test:
    """One comparison from its TRAINED_SCHEMA fields (JSON spells infinite interval edges "inf", "-inf")."""
    # Any: the values come from JSON, each of its Test field's own type (str, float, int, bool)
    decoded: dict[str, Any] = {k: (math.inf if v == "inf" else -math.inf if v == "-inf" else v) for k, v in fields.items()}
    return Test(**decoded)


def _trained_tests(claim_id: str) -> Callable[[Evidence], list[Test]]:
    def tests(ev: Evidence) -> list[Test]:
        entry = ev.trained.get(claim_id)
        if not entry:
            return []
        return [_trained_test(t) for t in entry["tests"]]
    return tests


TRAINED_CLAIMS: list[Claim] = []


def register_trained_claim(claim_id: str, *, source: str, says: str, judged: str, resolution: float,
                           expectation: str = "inconclusive", evidence: str = "") -> Claim:
    """Register a claim about trained models; its comparisons come from TRAINED_SCHEMA evidence."""
    claim = Claim(claim_id, source, says, "trained", judged, expectation,
                  evidence or f"no trained-model evidence yet ({TRAINED_SCHEMA} from the training probe)",
                  _trained_tests(claim_id), resolution, setting="trained models")
    TRAINED_CLAIMS.append(claim)
    return claim


register_trained_claim("mix_ln.trained.uniform_gradients", source="Li et al. 2024 (Mix-LN), arXiv 2412.13795, abstract",
                       says="during pre-training Mix-LN's per-layer gradient norms are more uniform than Pre-LN's "
                            "and Post-LN's", judged="spread of log per-layer gradient norms, Mix-LN minus Pre-LN, "
                            "one-sided < 0", resolution=0.2)
register_trained_claim("normformer.trained.gradient_mismatch",
                       source="Shleifer et al. 2021 (NormFormer), arXiv 2110.09456, abstract",
                       says="during pre-training Pre-LN's early layers get much larger gradients than later ones; "
                            "NormFormer reduces the mismatch", judged="first/last layer gradient ratio, NormFormer "
                            "minus Pre-LN, one-sided < 0", resolution=0.2)


def all_claims() -> list[Claim]:
    return XIONG_CLAIMS + PROJECT_CLAIMS + ARCH_CLAIMS + TRAINED_CLAIMS


def claim_by_id(claim_id: str) -> Claim:
    for claim in all_claims():
        if claim.id == claim_id:
            return claim
    raise KeyError(claim_id)
