"""The initialisation predictions of the new architectures, derived with sympy where they are
algebra, each beside a plausible wrong variant that the same procedure refutes.

Every derivation returns a `Derivation`: the closed form (a sympy expression), the wrong
variant's closed form, and `decide`'s verdicts (normtheory.symbolic.identities) for the
claim (proven) and the wrong variant (a counterexample). The claims (theory/claims/archs.py)
evaluate the closed forms; the tests check the verdicts. Mean-field facts used as premises
(stated, not derived here): a branch output F of a block whose last weight matrix W has a
sign-symmetric law is uncorrelated with the stream (flip W's sign), so mean squares add;
LayerNorm/RMSNorm outputs have mean square var/(var + eps) -> 1 (eps -> 0); the FFN gain of
a ReLU FFN with Xavier weights is ffn = d_ff Var(W2) (d Var(W1))/2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # sympy is imported where a derivation runs, not with this module
    import sympy as sp

    from normtheory.symbolic.identities import Verdict


@dataclass(frozen=True)
class Derivation:
    name: str
    claim: sp.Expr  # the prediction
    wrong: sp.Expr  # the wrong variant
    symbols: dict[str, sp.Symbol]  # name -> symbol of claim and wrong
    proof: Verdict  # of the derivation
    wrong_verdict: Verdict  # of the wrong variant against the derivation (refuted)

    def value(self, **values: float) -> float:
        import sympy as sp

        return float(self.claim.subs({self.symbols[k]: sp.nsimplify(v) for k, v in values.items()}))

    def wrong_value(self, **values: float) -> float:
        import sympy as sp

        return float(self.wrong.subs({self.symbols[k]: sp.nsimplify(v) for k, v in values.items()}))


def _points(symbols, count=3):
    from normtheory.symbolic.identities import rational_points

    return [{s: abs(v) + 1 for s, v in p.items()} for p in rational_points(symbols, count)]


def normformer_growth() -> Derivation:
    """NormFormer: h <- h + LN(Attn) adds exactly 1 (an LN output); h <- h + W2 LN(ReLU(...))
    adds d_ff Var(W2) (W2 reads a mean-square-1 vector of width d_ff). Summed over l blocks
    from E||h_0||²/d = 1. Wrong variant: the mid-FFN LN left out of the bookkeeping (the FFN
    adds its plain gain ffn, as in Pre-LN)."""
    import sympy as sp

    from normtheory.symbolic.identities import decide

    l, j, r, ffn = sp.symbols("l j r ffn", positive=True)  # r = d_ff Var(W2)
    per_block = 1 + r
    derived = 1 + sp.summation(per_block, (j, 1, l))
    claim = 1 + l * (1 + r)
    wrong = 1 + l * (1 + ffn)
    symbols = {"l": l, "r": r, "ffn": ffn}
    points = [{**p, ffn: p[r] / 5} for p in _points([l, r])]
    return Derivation("normformer.growth", claim, wrong, symbols, decide(derived, claim, points),
                      decide(wrong, claim, points))


def hybrid_norm_fixed_point() -> Derivation:
    """HybridNorm: y = N(h + Attn) has mean square 1, the block returns y + FFN(y): mean
    square 1 + ffn at every layer, whatever came before (the FFN input is normalised). Wrong
    variant: the FFN in Post-LN form, N(y + FFN(y)), mean square 1."""
    import sympy as sp

    from normtheory.symbolic.identities import decide

    ffn, m_prev, attn = sp.symbols("ffn m_prev attn", positive=True)
    y_ms = (m_prev + attn) / (m_prev + attn)  # N(.) divides by the root mean square
    derived = y_ms + ffn
    claim = 1 + ffn
    wrong = sp.Integer(1)
    symbols = {"ffn": ffn, "m_prev": m_prev, "attn": attn}
    points = _points([ffn, m_prev, attn])
    return Derivation("hybrid_norm.fixed_point", claim, wrong, symbols, decide(derived, claim, points),
                      decide(wrong, claim, points))


def ngpt_step() -> Derivation:
    """nGPT: h, b unit vectors with b orthogonal to h and to h_0 (large d at initialisation);
    h' = (h + alpha (b - h)) / ||h + alpha (b - h)||. Then cos(h', h_0) = c cos(h, h_0) with
    c = (1 - alpha) / sqrt((1 - alpha)² + alpha²), so after k steps c^k. The claim is checked
    on coordinates: h = (x, y, 0), h_0 = (1, 0, 0), b = (0, 0, 1). Wrong variant: the
    interpolation weight read as the cosine, c = 1 - alpha (no retraction)."""
    import sympy as sp

    from normtheory.symbolic.identities import decide

    alpha, theta, k = sp.symbols("alpha theta k", positive=True)
    h = sp.Matrix([sp.cos(theta), sp.sin(theta), 0])
    b, h0 = sp.Matrix([0, 0, 1]), sp.Matrix([1, 0, 0])
    step = h + alpha * (b - h)
    cos_new = (step.dot(h0)) / sp.sqrt(step.dot(step))
    c = (1 - alpha) / sp.sqrt((1 - alpha) ** 2 + alpha**2)
    points = [{alpha: sp.Rational(1, q), theta: sp.Rational(p, 7)} for q, p in ((20, 1), (3, 2), (7, 5))]
    proof = decide(cos_new, c * sp.cos(theta), points)
    wrong_c = 1 - alpha
    wrong_verdict = decide(wrong_c * sp.cos(theta), c * sp.cos(theta), points)
    return Derivation("ngpt.cos_to_input", c**k, wrong_c**k, {"alpha": alpha, "k": k}, proof, wrong_verdict)


def peri_growth() -> Derivation:
    """Peri-LN: each of the two sublayers adds one LN output (mean square 1): 1 + 2l.
    Wrong variant: one normalised vector per block, 1 + l."""
    import sympy as sp

    from normtheory.symbolic.identities import decide

    l, j = sp.symbols("l j", positive=True)
    derived = 1 + sp.summation(1 + 1, (j, 1, l))
    claim, wrong = 1 + 2 * l, 1 + l
    points = _points([l])
    return Derivation("peri.growth", claim, wrong, {"l": l}, decide(derived, claim, points), decide(wrong, claim, points))


def qk_norm_logit_bound() -> Derivation:
    """QK-Norm with RMSNorm over the head width d_k and scales gamma: ||RMSNorm(q)||² =
    d_k ms/(ms + eps) <= d_k, so by Cauchy-Schwarz every logit (gamma_q q_hat).(gamma_k k_hat)
    / sqrt(d_k) lies within sqrt(d_k) max|gamma_q gamma_k|. The derivation proves the norm
    identity; the bound follows. Wrong variant: logits within 1 (read as cosines)."""
    import sympy as sp

    from normtheory.symbolic.identities import decide

    dk, ms, eps, g = sp.symbols("d_k ms epsilon gamma", positive=True)
    norm_sq = dk * ms / (ms + eps)  # ||x / sqrt(ms + eps)||² for ||x||² = d_k ms
    derived_bound = sp.sqrt(norm_sq) * sp.sqrt(norm_sq) / sp.sqrt(dk) * g
    claim = sp.sqrt(dk) * g
    points = _points([dk, ms, g])
    proof = decide(sp.limit(derived_bound, eps, 0), claim, points)
    wrong = g
    return Derivation("qk_norm.logit_bound", claim, wrong, {"d_k": dk, "gamma": g}, proof, decide(wrong, claim, points))


def softmax_entropy_floor(n: int, bound: float) -> float:
    """The smallest softmax entropy (nats) over n logits within [-B, B]: one logit at B, the
    others at -B (entropy is Schur-concave; pushing logits to the extremes lowers it)."""
    import math

    z = math.exp(bound) + (n - 1) * math.exp(-bound)
    p_top, p_rest = math.exp(bound) / z, math.exp(-bound) / z
    return -(p_top * math.log(p_top) + (n - 1) * p_rest * math.log(p_rest))


def all_derivations() -> list[Derivation]:
    return [normformer_growth(), hybrid_norm_fixed_point(), ngpt_step(), peri_growth(), qk_norm_logit_bound()]
