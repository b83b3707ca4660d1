"""A-priori componentwise forward error bounds |ŷ_i − y_i| for every `Model` (emulation/forward.py).

Notation (per row; u = unit roundoff of the accumulator, u_o of the output format):
  n entries, width d (n = d − 1 for CRMSNorm), μ = mean x, σ² = biased variance,
  q = mean x², m₁ = mean |x|, X = max |x|, v = σ² + eps (LayerNorm) or q + eps (RMSNorm),
  h = reduction depth of the model (models.py), η = absolute error of one rounding at the
  bottom of the range (half the smallest subnormal; the smallest normal under FTZ),
  γ_k = k·u/(1 − k·u) (Higham, ASNA §3.1: the product of k factors (1 + δ), |δ| ≤ u, is
  1 + θ_k with |θ_k| ≤ γ_k).
The condition numbers that appear are κ = sqrt((μ² + σ²)/(σ² + eps)) ≥ m₁/sqrt(v) for the
mean error of LayerNorm (finite on constant rows because eps is in it), and
κ∞ = X/sqrt(σ² + eps) for Welford's running means.

Derivation, LayerNorm two-pass (proofs/test_bounds_algebra.py checks the algebra):
 1. ŝ = Σx(1 + θ_h) termwise, μ̂ = fl(ŝ·fl(1/d)): |μ̂ − μ| ≤ Δ := γ_{h+2}·m₁.
 2. ĉ_i = fl(x_i − μ̂) = (c_i + δμ)(1 + δ_i), δμ = μ − μ̂. Because Σc_i = 0,
    Σ(c_i + δμ)² = dσ² + d·δμ² exactly — the first-order error of the mean cancels, which is
    why two-pass is good. With the square, the h additions and the scaling by fl(1/d):
    var̂ = (σ² + δμ²)(1 + θ_{h+5}), so |var̂ − σ²| ≤ γ_{h+5}(σ² + Δ²) + Δ².
 3. v̂ = fl(var̂ + fl(eps)): |v̂ − v| ≤ E_v := E_var + e_ε + u·(v + E_var + e_ε) + η with
    e_ε = u·eps + η (eps itself may round into the subnormals of fp16); ρ_v = E_v/v.
 4. r̂ = rsqrt(v̂) within α (relative). (1 + t)^(−1/2) is convex and decreasing, so on
    |t| ≤ ρ_v its largest deviation from 1 is (1 − ρ_v)^(−1/2) − 1, at t = −ρ_v (exact, not
    the mean-value bound ρ/(2(1 − ρ)^(3/2)) used before; proofs/test_bounds_forward_sharpening.py).
    Every statistic the models compute is ≥ 0 (sums of squares; one-pass clamps; Welford's
    increments δ̂·â are ≥ 0 because rounding is monotone and |fl(δ̂/j)| < |δ̂| for j ≥ 2), so
    v̂ ≥ fl(eps) ≥ eps_low := eps(1 − u) − η: ρ_r = max(sqrt(v/max(v − E_v, eps_low)) − 1,
    1 − sqrt(v/(v + E_v))), finite for every E_v when eps_low > 0 — a statistic with no
    relative accuracy left (one-pass at |μ| ≫ σ, Welford at κ ≈ 1/(k·u)) still gets a bound,
    the one the floor gives. |r̂/r − 1| ≤ ρ_R := (1 + ρ_r)(1 + α) − 1.
 5. n̂_i = fl(ĉ_i·r̂) = (c_i + δμ)·r·(1 + θ), |θ| ≤ ρ_N := (1 + ρ_R)(1 + u)² − 1 (one (1 + u)
    for RMSNorm and CRMSNorm, which round only the product):
    |n̂_i − n_i| ≤ ρ_N|n_i| + (1 + ρ_N)·Δ/sqrt(v) — the second term is γ_{h+2}·κ at most.
 6. Affine in the accumulator: weight |w|E_n(1 + u) + u|n·w|; weight_bias (two roundings,
    or one FMA, which the same expression covers) |w|E_n(1 + u)² + (2u + u²)|n·w| + u|b|;
    offset_weight with (1 + w) formed in a format of unit roundoff u_f: |1+w|(1+u_f)·E_n(1+u)
    + |n|·u_f|1 + w|(1 + u) + u|n(1 + w)|.
 7. Output: once: + u_o(|z| + E_z) + η_o (none when the output format is at least as precise
    as the accumulator); truncate: + 2u_o(|z| + E_z) + 2η_o (a truncation errs by < 1 ulp,
    and ulp(z) ≤ 2u_o|z|); llama: n̂ is rounded first (E_n + u_o(|n| + E_n) + η_o) and the
    affine step uses u_o.
RMSNorm: q̂ = q(1 + θ_{h+3}); the mean term is absent. CRMSNorm: Σz with error γ_h·Σ|z|,
(Σz)² then error E₁(2|Σz| + E₁), plus γ_{h+5}(Σz² + (Σz)²)/d.
Welford (lanes of k entries, t merge levels, exact identity S = Σ_i c_i·δ_i² over all
updates, c = (j − 1)/j for a lane step j and na·nb/n for a merge): every running mean stays
in [min x, max x] (rounding is monotone), so |x − m̂| and |mb − ma| are at most the range R
and |m̂| ≤ X. Lane step j: m̂_j = fl(m̂ + fl(fl(x − m̂)/j)) gives exactly
ε_j = ε_{j−1}(j − 1)/j + (x − m̂)/j·θ₂ + α·(m̂ + q̂) (|θ₂| ≤ 2u + u², |α| ≤ u), so
j|ε_j| ≤ (j − 1)|ε_{j−1}| + (2u + u²)R + j(uX/(1 − u) + η) and, with ε₁ = 0,
|ε_k| ≤ (2u + u²)R + (uX/(1 − u) + η)(k + 1)/2. Merge m̂ = fl(m̂a + fl(fl(m̂b − m̂a)·fl(nb/n))):
m̂ − m = εa(1 − s) + εb·s + (m̂b − m̂a)·s·θ₃ + η + α(m̂a + p̂), so each level adds at most
γ₃R + uX/(1 − u) + η: e ≤ R(2u + u² + tγ₃) + (uX/(1 − u) + η)((k + 1)/2 + t) — the part
proportional to X (what an offset row |mean| ≫ std makes large) is 5× below the former
uX(k/2 + 5 + 8t) at k = 8, t = 5 (proofs/test_bounds_algebra.py checks both recursions). An update's error is
c(2|δ|E + E²) + γ₄·c(|δ| + E)², E = 2e, and by Cauchy–Schwarz
Σ_i |δ_i|·(weights) ≤ sqrt(S)·(sqrt(2n) + 2·sqrt(n·t/4)); the nonnegative updates are summed
with depth k + 2t + 3. That form charges every update the final, largest mean error e and
the Cauchy–Schwarz spread: at k = 8, t = 5 it is ≈ 70·κ∞·u relative, no bound at all from
κ ≈ 3·10⁵ in fp32. bounds/welford.py bounds the same errors through the adjoint of the
recurrence instead (each rounding weighted by how much the exact M and μ depend on its result,
with the running-mean error bounds e_j of each step); both forms are sound and the smaller is
used. Its relative error is a few κ·u at κ = 10⁴ (tests/test_precision_welford.py). At
κ ≈ 10⁶ in fp32 no bound can promise relative accuracy of the variance (a running mean can
stall k/2 ulps from the data, which is σ there): the floor of step 4 applies. One-pass: var̂ = fl(q̂ − μ̂²):
|var̂ − σ²| ≤ γ_{h+5}(q + (|μ| + Δ)²) +
(1 + γ₂)·Δ(2|μ| + Δ) — relative to v that is ≈ h·u·κ², the catastrophe of E[x²] − E[x]².
Eps outside (r = 1/(sqrt(stat) + eps)): |sqrt(a) − sqrt(b)| ≤ min(|a − b|/sqrt(b), sqrt|a − b|).

Probabilistic form (`kind="probabilistic"`, labelled as such). Assumption (Higham and Mary
2019): each rounding's relative error has mean zero given all earlier ones and is at most u
in size; the data are fixed. Every γ_k is replaced by γ̃_k(λ) = exp(λ·sqrt(k)·u +
k·u²/(1 − u)) − 1 (their Thm 2.8: fails with probability ≤ 2·exp(−λ²(1 − u)²/2)). The sums
(the mean's, the sums of squares of two-pass LayerNorm and RMSNorm, Welford's recurrence)
also have the sharper partial-sum form of the same martingale argument (`_azuma_sum_error`,
`_mean_error`, `_positive_sum_error`, bounds/welford.py): the error Σ_k e_k of a sum is a
martingale whose k-th increment is at most u·binade(|ŵ_k|) — half an ulp of the operand sum
it rounds, which is up to 2× below u·|ŵ_k| (precision-aware, as in Hallman and Ipsen 2023) —
so by Azuma–Hoeffding |Σe_k| ≤ λ·sqrt(Σ_k (u·binade(|s_k| + drift_k))²), s_k the exact
partial sums, except with probability 2·exp(−λ²/2). The drift (how far ŵ_k may be from s_k)
is γ_h·Σ|x| below it in a tree; in a chain (one lane: the sequential, fp16 and bf16 models)
the martingale is stopped when a prefix error first exceeds E, which makes the drift ≤ E for
any E ≥ λ·‖c(E)‖ — without that, a 256-term bf16 sum (γ_h ≈ 1) would have no partial-sum
form at all. Scaling by fl(1/d) is exact when d is a power of two. The smaller of the γ̃ and
partial-sum forms is used (a union bound). λ = 4.5: every step fails with probability
< 9·10⁻⁵, and an element's bound uses at most six of them, so it fails with probability
< 10⁻³ per element (tests/test_precision_probabilistic.py checks the fraction on 2000
random rows of every model). The rsqrt error α, the scale's rounding of eps, the output
rounding and the second-order terms stay worst-case: they are single, possibly systematic
errors (a hardware rsqrt may err with the same sign on every row), which no averaging over
roundings reduces — but they are measured against their binades (`_scale_error`): the
rounding of v̂ = fl(stat̂ + fl(eps)) by u·binade(v + E_stat + e_ε), half an ulp of its result,
and the rsqrt by `rsqrt_error_per_row`, RN(z) moved k ulps of z's own binade (≈ u + 2ku
relative to a binade's bottom, down to half that at its top) — still bounded, not random,
so a same-sign hardware error is covered. Adding the rounding of v̂ to the statistic's
martingale instead (λ·sqrt(S² + c²) for S + c) pays only where c < 2λS/(λ² − 1) ≈ 0.47·S and
then little: it is done for bounds_backward's row scales (λ = 1, `scale_only`), where it
always pays, not here. Under DAZ the partial sums are those of the loaded (flushed) inputs, and
the step from x to x' is added worst-case as before. The assumption is about data whose
roundings behave randomly: on structured rows it can fail, e.g. on constant fp32 rows a
sequential sum's partial sums k·c round the same way again and again, and 2% of the
elements of such rows (d = 64, the two_pass_sequential model) exceed the probabilistic bound
(the worst-case bound holds there, as everywhere).

Every bound is multiplied by SAFETY = 1 + 2^-20: the bound itself and the row statistics it
uses are evaluated in binary64, with relative error far below 2^-20 for n ≤ 2^24.
Rows where an intermediate may overflow (domains.overflow_threshold), or with an input that
the accumulator cannot hold exactly (fp32 data in a bf16 accumulator), get an infinite bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from normtheory.formats import FORMATS, FloatFormat
from normtheory.precision.bounds.domains import overflow_threshold, rounding_margin
from normtheory.precision.bounds.welford import welford_errors
from normtheory.precision.models import Model

SAFETY = 1.0 + 2.0**-20
LAMBDA = 4.5
KINDS = ("worst", "probabilistic")


@dataclass(frozen=True)
class ForwardBound:
    pre_rounding: np.ndarray  # bound on |z − y| before the output rounding (or llama's chain)
    total: np.ndarray  # bound on |ŷ − y| for the output in the output format


class Gammas:
    """γ_k (worst case) or γ̃_k(λ) (probabilistic) for one unit roundoff."""

    def __init__(self, u: float, kind: str, lam: float = LAMBDA):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        # λ travels with the γ's so that every probabilistic form of one evaluation uses the same
        # λ (bounds_backward evaluates the forward forms at λ = 1 to get scales)
        self.u, self.kind, self.lam = u, kind, lam

    def __call__(self, k) -> float:
        k = float(k)
        if self.kind == "worst":
            return k * self.u / (1.0 - k * self.u) if k * self.u < 1 else math.inf
        return math.expm1(self.lam * math.sqrt(k) * self.u + k * self.u**2 / (1.0 - self.u))


def _eta(fmt: FloatFormat, ftz: bool) -> float:
    return fmt.min_normal if ftz else fmt.min_subnormal / 2


def tree_partial_sums(values: np.ndarray, model: Model):
    """(s, a): the exact partial sums s_k that the model's tree rounds, and the partial sums a_k
    of |values| below each, as (rows, K) arrays: every lane step after a lane's first (that one
    is exact) and every butterfly combine. Shorter last lanes count an extra step (an upper
    bound, as the bounds need)."""
    rows, n = values.shape
    lanes = model.lane_count(n)
    steps = -(-n // lanes)
    padded = np.zeros((2, rows, steps * lanes))
    padded[0, :, :n] = values
    padded[1, :, :n] = np.abs(values)
    partial = np.cumsum(padded.reshape(2, rows, steps, lanes), axis=2)
    out = [partial[:, :, 1:, :].reshape(2, rows, -1)]
    level = partial[:, :, -1, :]
    width = 1 << (lanes - 1).bit_length()
    level = np.concatenate([level, np.zeros((2, rows, width - lanes))], axis=2)
    while level.shape[2] > 1:
        half = level.shape[2] // 2
        level = level[:, :, :half] + level[:, :, half:]
        out.append(level)
    both = np.concatenate(out, axis=2)
    return both[0], both[1]


def tree_partial_sums_norm(values: np.ndarray, model: Model) -> np.ndarray:
    """sqrt(Σ_k s_k²) per row over the exact partial sums s_k that the model's tree rounds."""
    return np.sqrt((tree_partial_sums(values, model)[0] ** 2).sum(axis=1))


def binade(magnitude: np.ndarray) -> np.ndarray:
    """2^⌊log2 m⌋ (0 at m = 0): a rounding to nearest of w with |w| ≤ m errs by at most u·binade(m),
    half an ulp of w — not u·|w|, which is up to twice as large (Hallman and Ipsen 2023 call such
    bounds precision-aware)."""
    magnitude = np.asarray(magnitude, dtype=np.float64)
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log2(np.where(magnitude > 0, magnitude, 1.0)))
    return np.where(magnitude > 0, np.ldexp(1.0, exponent.astype(int)), 0.0)


def _mean_error(x, model, g, u, eta):
    """Δ, the bound on |μ̂ − μ| with μ̂ = fl(fl(Σx)·fl(1/d)).

    Worst case: γ_{h+2}·mean|x|. Probabilistic: the sum's error is a martingale over its
    roundings (`_azuma_sum_error`: half-ulp increments at the exact partial sums, the drift of
    the computed operands from them bounded in the tree or by stopping in a chain) — the
    partial sums of a cancelling row are far below Σ|x|, which is where γ̃·Σ|x| was loose.
    When γ_h is large the γ̃_h·Σ|x| form can be smaller: the smaller of the two is used, which
    fails with at most the sum of the two failure probabilities (a union bound). The two
    roundings of the scaling stay worst-case (γ₂; none when d is a power of two).
    """
    rows, n = x.shape
    h = model.reduction_depth(n)
    abs_x = np.abs(x)
    if g.kind == "worst":
        return g(h + 2) * abs_x.mean(axis=1) + 2 * eta  # the scaling by fl(1/d) may underflow
    # DAZ: the kernel sums the loaded x' (subnormals flushed); this bounds |μ̂ − mean x'|, and
    # _normalized_error adds |mean x' − μ| ≤ η_in
    x = _daz(x, model, eta)
    gamma2 = _scale_roundings(n, u)
    sum_error = np.minimum(probabilistic_sum_error(x, model, u, g.lam), g(h) * abs_x.sum(axis=1))
    return ((1 + gamma2) * sum_error + gamma2 * np.abs(x.sum(axis=1))) / n + 2 * eta


_CHAIN_ITERATIONS = 8


def _azuma_sum_error(s_abs, a, own, n, model, u, lam):
    """λ·sqrt(Σ_k c_k²): Azuma–Hoeffding for the error Σ_k e_k of a tree sum, e_k = fl(ŵ_k) − ŵ_k.

    Under the model of Higham and Mary (each rounding's relative error mean zero given the
    earlier ones) the e_k are martingale increments, |e_k| ≤ u·binade(|ŵ_k|) (half an ulp).
    ŵ_k, the computed operands' exact sum, is within the error of the subtree below it of
    the exact partial sum s_k: within γ_h·a_k always, so c_k = u·binade(|s_k| + γ_h·a_k) bounds
    |e_k|. For a chain (one lane) the subtree is the prefix: stop the martingale at the first
    prefix whose error exceeds E; before that |ŵ_k − s_k| ≤ E, so with c_k(E) =
    u·binade(|s_k| + min(E, γ_h·a_k)) Azuma gives P(some prefix error > E) ≤ 2·exp(−λ²/2)
    for any E ≥ λ·‖c(E)‖. E₀ = λu‖s‖/(1 − λu√K) is such an E, and so is E_{i+1} = λ‖c(E_i)‖
    (c is monotone in E, so every iterate is again such an E, and no larger than the one before):
    _CHAIN_ITERATIONS steps of that iteration are used (two left the bound ≈ 2% above the fixed
    point on 256-term bf16 sums, where the drift E is a fifth of the sum). This is what makes long bf16
    and fp16 sums boundable at all (γ_h·a_k is as large as the sum there). `own` adds the
    terms' own roundings (products rounded before they are added, or the first product of each
    lane under FMA): u·binade of their magnitudes.
    """
    rows, count = s_abs.shape
    worst_h = Gammas(u, "worst")(model.reduction_depth(n))
    own_sq = 0.0 if own is None else ((u * binade(own)) ** 2).sum(axis=1)
    drift = worst_h * a

    def norm(shift):
        return lam * np.sqrt(((u * binade(s_abs + shift)) ** 2).sum(axis=1) + own_sq)

    bound = norm(drift)
    if model.lane_count(n) == 1 and count > 0:  # a chain
        reach = lam * u * math.sqrt(count + (0 if own is None else own.shape[1]))
        if reach < 1:
            e = lam * u * np.sqrt((s_abs**2).sum(axis=1) + (0 if own is None else (own**2).sum(axis=1))) / (1 - reach)
            for _ in range(_CHAIN_ITERATIONS):
                e = norm(np.minimum(drift, e[:, None]))
            bound = np.minimum(bound, e)
    return bound


def probabilistic_sum_error(values: np.ndarray, model: Model, u: float, lam: float = LAMBDA) -> np.ndarray:
    """Probabilistic bound on the error of Σ values (exact inputs) summed along axis 1 by the
    model's tree: `_azuma_sum_error` over the tree's partial sums (fails with probability at
    most 2·exp(−λ²/2))."""
    s, a = tree_partial_sums(values, model)
    return _azuma_sum_error(np.abs(s), a, None, values.shape[1], model, u, lam)


def _positive_sum_error(terms: np.ndarray, model: Model, u: float, lam: float = LAMBDA) -> np.ndarray:
    """Probabilistic bound on the error of the model's tree sum of products (squares) whose
    exact values are at most `terms` (≥ 0): the partial sums of nonnegative terms are at most
    those of `terms`, and each product's own rounding (fused into the first step of a lane,
    separate without FMA) is counted for every term (an upper bound)."""
    s, a = tree_partial_sums(terms, model)
    return _azuma_sum_error(s, a, terms, terms.shape[1], model, u, lam)


def _daz(x, model, eta):
    """The inputs as a DAZ kernel loads them (η is the smallest normal under FTZ)."""
    return np.where(np.abs(x) < eta, 0.0, x) if model.ftz else x


def _scale_roundings(d, u):
    """γ₂ for the two roundings of fl(Ŝ·fl(1/d)), none when d is a power of two: then fl(1/d) and
    the product are exact (an underflowing product is covered by the η terms)."""
    return 0.0 if d & (d - 1) == 0 else Gammas(u, "worst")(2)


def _scaled(err_sum, total, d, u):
    """Error of fl(Ŝ·fl(1/d)) given |Ŝ − S| ≤ err_sum, S = total ≥ 0 (two worst-case roundings)."""
    gamma2 = _scale_roundings(d, u)
    return ((1 + gamma2) * err_sum + gamma2 * total) / d


def _row_stats(x: np.ndarray):
    mu = x.mean(axis=1)
    var = ((x - mu[:, None]) ** 2).mean(axis=1)
    return mu, var


def _stat_error(op, model, x, d, g, u, eta):
    """(Δ: bound on the mean error or 0, the statistic, bound on its error) per row."""
    rows, n = x.shape
    h = model.reduction_depth(n)
    abs_x = np.abs(x)
    underflow = (n + 4) * eta
    if op == "rmsnorm":
        q = (x * x).mean(axis=1)
        err = g(h + 3) * q
        if g.kind == "probabilistic":  # DAZ: of the loaded x' (see _mean_error)
            loaded = _daz(x, model, eta)
            err = np.minimum(err, _scaled(_positive_sum_error(loaded * loaded, model, u, g.lam), q * n, n, u))
        return np.zeros(rows), q, err + underflow
    if op == "crmsnorm":
        s1, s2 = x.sum(axis=1), (x * x).sum(axis=1)
        e1 = g(h) * abs_x.sum(axis=1)
        total = (s1 * s1 + s2) / d
        err = g(h + 5) * total + (1 + g(2)) * e1 * (2 * np.abs(s1) + e1) / d + underflow
        if g.kind == "probabilistic":
            # Ŝ = fl(fl(ŝ1·ŝ1) + ŝ2) (one rounding with FMA) from the two tree sums, each bounded
            # by its own martingale (two union events): |ŝ1² − s1²| ≤ e1(2|s1| + e1), |ŝ2 − s2| ≤
            # e2, and the product and the add each move Ŝ by at most half an ulp of their result
            # (u·binade, worst case: binade is monotone, so the bound's binade covers the value's).
            # Then fl(Ŝ·fl(1/d)) as for the other statistics. DAZ: of the loaded x' (as above).
            loaded = _daz(x, model, eta)
            l1, l2 = loaded.sum(axis=1), (loaded * loaded).sum(axis=1)
            e1_prob = np.minimum(g(h) * np.abs(loaded).sum(axis=1), probabilistic_sum_error(loaded, model, u, g.lam))
            e2_prob = _positive_sum_error(loaded * loaded, model, u, g.lam)
            inner = e1_prob * (2 * np.abs(l1) + e1_prob) + e2_prob
            product_rounding = u * binade((np.abs(l1) + e1_prob) ** 2)
            err_sum = inner + product_rounding + u * binade(l1 * l1 + l2 + inner + product_rounding)
            err = np.minimum(err, _scaled(err_sum, l1 * l1 + l2, d, u) + underflow)
        return np.zeros(rows), total, err
    mu, var = _row_stats(x)
    if model.stats == "two_pass":
        delta = _mean_error(x, model, g, u, eta)
        err = g(h + 5) * (var + delta**2) + delta**2
        if g.kind == "probabilistic":
            # Ŝ − S = n·δμ² + Σ(c_i + δμ)²(2δ_i + δ_i²) + the tree's Σδ'_k·w_k (Σc = 0): the
            # subtraction roundings δ_i and the tree's δ'_k are one martingale (after the first
            # pass, on the event that Δ holds: a union bound with the mean's failure probability)
            # (DAZ: of the loaded x', as in _mean_error; _normalized_error adds var' − var)
            loaded = _daz(x, model, eta)
            mu_l, var_l = _row_stats(loaded)
            dev = np.abs(loaded - mu_l[:, None]) + delta[:, None]
            terms = dev**2 * (1 + u) ** 2
            subtraction = g.lam * u * 2 * np.sqrt((dev**4).sum(axis=1))
            tree = _positive_sum_error(terms, model, u, g.lam)
            err_sum = n * delta**2 + u * u * (dev**2).sum(axis=1) + np.hypot(subtraction, tree)
            err = np.minimum(err, _scaled(err_sum, var_l * n, n, u))
        return delta, var, err + underflow
    if model.stats == "one_pass":
        delta = _mean_error(x, model, g, u, eta)
        q = (x * x).mean(axis=1)
        big = np.abs(mu) + delta
        return delta, var, g(h + 5) * (q + big**2) + (1 + g(2)) * delta * (2 * np.abs(mu) + delta) + underflow
    k, t = model.per_lane(n), model.tree_levels(n)
    x_max = abs_x.max(axis=1)
    # worst-case in both kinds (see above): the X-proportional error is one rounding of the new
    # mean per step, the rest is proportional to the row's range (the running means stay in
    # [min x, max x], up to a rounding: the 2u·X and 4u·X margins); each step may underflow by η
    x_range = x.max(axis=1) - x.min(axis=1) + 4 * u * x_max
    gamma3 = Gammas(u, "worst")(3)
    mean_err = (x_range * (2 * u + u * u + t * gamma3)
                + (u * x_max * (1 + 2 * u) / (1 - u) + eta) * ((k + 1) / 2 + t))
    e = 2 * mean_err
    s = d * var
    spread = math.sqrt(2 * n) + 2 * math.sqrt(n * t / 4)
    first = e * np.sqrt(s) * spread + e * e * (n + n * t / 4)
    err_s = first + g(k + 2 * t + 6) * 2 * (s + first)
    err_var = g(1) * var + (1 + g(1)) * err_s / d
    # the adjoint form (bounds/welford.py), on the loaded x' under DAZ (_normalized_error adds
    # the difference to x); both forms are sound, so the smaller is used
    loaded = _daz(x, model, eta)
    scale = np.abs(loaded).max(axis=1) * (1 + 2 * u) / (1 - u)
    mean_worst, mean_prob, m2_worst, m2_prob = welford_errors(loaded, model, u, eta, g.lam, x_range, scale)
    mu_l, var_l = _row_stats(loaded)
    mean_err = np.minimum(mean_err, mean_worst)
    err_var = np.minimum(err_var, _scaled(m2_worst, var_l * n, n, u))
    if g.kind == "probabilistic":
        mean_err = np.minimum(mean_err, mean_prob)
        err_var = np.minimum(err_var, _scaled(m2_prob, var_l * n, n, u))
    return mean_err, var, err_var + underflow


def rsqrt_relative_error(model: Model, u: float) -> float:
    """α: the bound on the rsqrt's own relative error |r̂/z − 1|, z = 1/scalê exactly (RN(z) moved
    `rsqrt_ulps` ulps of at most 2u relative each, then the approximate rsqrt's (1 ± rsqrt_rel)
    and its rounding; 2^-51: binary64's evaluation of z)."""
    if model.rsqrt_rel == 0:
        return (1 + u + 2.0**-51) * (1 + 2 * model.rsqrt_ulps * u) - 1
    return (1 + u + 2.0**-51) * (1 + 2 * model.rsqrt_ulps * u) * (1 + model.rsqrt_rel) * (1 + u) - 1


def rsqrt_error_per_row(model: Model, acc: FloatFormat, r, rho_r) -> np.ndarray:
    """α per row, ≤ rsqrt_relative_error: the rsqrt returns RN(z') moved k ulps, z' = z(1 ± 2^-52)
    and z = 1/scalê within r(1 ± ρ_r) (ρ_r: a bound on the statistic's part, |z/r − 1| ≤ ρ_r), so
    |r̂ − z| ≤ ½ulp(Z) + k·ulp(Z(1 + u)) with Z = r(1 + ρ_r)(1 + 2^-51), and relative to
    z ≥ r(1 − ρ_r) that is below the relative α wherever r is not just under a power of two (an
    ulp is relative to the binade, not to r). The same bounded error as α — not a random one —
    only measured against the row's own binade. Approximate rsqrts (rsqrt_rel > 0): α."""
    u = acc.unit_roundoff
    alpha = rsqrt_relative_error(model, u)
    rows = np.shape(r)
    if model.rsqrt_rel != 0:
        return np.full(rows, alpha)
    ok = np.isfinite(rho_r) & (rho_r < 0.5) & np.isfinite(r) & (r > 0)
    r = np.where(ok, r, 1.0)
    rho_r = np.where(ok, rho_r, 0.0)
    Z, z_lo = r * (1 + rho_r) * (1 + 2.0**-51), r * (1 - rho_r)
    per_row = (0.5 * acc.ulp(Z) + model.rsqrt_ulps * acc.ulp(Z * (1 + u))) / z_lo + 2.0**-51
    return np.where(ok, np.minimum(per_row, alpha), alpha)


def _scale_error(model, stat, err_stat, eps, u, eta, acc=None, scale_only=False):
    """(r = exact 1/scale, bound ρ_R on |r̂/r − 1|, its statistic's part ρ_r) per row.

    With `acc` (the probabilistic kind: the worst-case bound keeps its relative forms) two single
    roundings are measured against their binades instead of u relative, both bounded, not random:
    the rounding of v̂ = fl(stat̂ + fl(eps)) errs by at most u·binade(v + E_stat + e_ε) (half an
    ulp of its result), and the rsqrt by `rsqrt_error_per_row` at the statistic's ρ_r — which
    holds on the same event as the statistic's probabilistic bound, so no failure is added.
    `scale_only`: err_stat is the statistic's sub-Gaussian scale (its λ = 1 bound) and the
    rounding of v̂ is one more increment of the same martingale (mean zero given the statistic's
    roundings, at most u·binade(…)): the two add in squares. Not a bound at any λ; for the row
    scales of bounds_backward (P2), where every increment is weighted by λ = LAMBDA > 1 later."""
    alpha = rsqrt_relative_error(model, u)
    # v̂ ≥ fl(eps) ≥ eps_low: every statistic the models compute is ≥ 0 (sums of squares;
    # Welford's increments δ̂·â are ≥ 0 because rounding is monotone; one-pass clamps), so the
    # computed scale never falls below the rounded eps, however large the statistic's error
    eps_low = max(eps * (1 - u) - eta, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if model.eps_mode == "inside":
            v = stat + eps
            err_eps = u * eps + eta  # fl(eps) may be subnormal in the accumulator (fp16)
            rounding_v = u * (v + err_stat + err_eps) if acc is None else u * binade(v + err_stat + err_eps)
            err_v = (np.hypot(err_stat, rounding_v) if scale_only else err_stat + rounding_v) + err_eps + eta
            low = np.maximum(v - err_v, eps_low)
            # (1 + t)^(−1/2) is convex: on |t| ≤ ρ its largest deviation from 1 is at t = −ρ
            rho_r = np.maximum(np.where(low > 0, np.sqrt(v / low), np.inf) - 1, 1 - np.sqrt(v / (v + err_v)))
            r = 1 / np.sqrt(v)
        else:
            root = np.sqrt(stat)
            err_root = np.minimum(np.where(root > 0, err_stat / root, np.inf), np.sqrt(err_stat))
            den = root + eps
            err_den = (err_root + u * root + eta + u * eps + eta) * (1 + u) + u * den + eta
            low = np.maximum(den - err_den, eps_low)
            rho_r = np.maximum(np.where(low > 0, den / low, np.inf) - 1, 1 - den / (den + err_den))
            r = 1 / den
    if acc is not None:
        alpha = rsqrt_error_per_row(model, acc, r, rho_r)
    return r, (1 + rho_r) * (1 + alpha) - 1, rho_r


def _affine_error(affine, n_abs, err_n, w, b, u, eta, offset_u):
    """(|z|, bound on |ẑ − z|) for the affine step done in a format of unit roundoff u."""
    if affine == "none":
        return n_abs, err_n
    if affine == "weight":
        aw = np.abs(w)
        return n_abs * aw, aw * err_n * (1 + u) + u * n_abs * aw + eta
    if affine == "weight_bias":
        aw, ab = np.abs(w), np.abs(b)
        z_abs = n_abs * aw + ab  # an upper bound on |z|, enough for the rounding terms
        return z_abs, aw * err_n * (1 + u) ** 2 + (2 * u + u * u) * n_abs * aw + u * ab + 2 * eta
    if affine == "offset_weight":
        a1 = np.abs(1.0 + w)
        err_w1 = offset_u * a1 + eta
        w1 = a1 + err_w1
        return n_abs * a1, w1 * err_n * (1 + u) + n_abs * err_w1 * (1 + u) + u * n_abs * a1 + eta
    raise ValueError(f"unknown affine mode {affine!r}")


def forward_bound(op: str, x, w=None, b=None, *, model: Model, eps: float, affine: str = "none",
                  out_format="fp32", kind: str = "worst") -> ForwardBound:
    """Componentwise bound on |ŷ − y| for `model` against the exact op with the model's eps_mode.

    An infinite element means no bound holds there (an infinite γ_k, ρ ≥ 1, possible overflow).
    """
    with np.errstate(all="ignore"):
        pre, total = _forward_bound(op, x, w, b, model, eps, affine, out_format, kind)
    # NaN can only come from 0·inf or inf − inf in the bound formulas: no bound there
    return ForwardBound(pre_rounding=np.where(np.isnan(pre), np.inf, pre),
                        total=np.where(np.isnan(total), np.inf, total))


@dataclass(frozen=True)
class Normalized:
    """What forward and backward bounds share: the exact normalized values and their error."""

    n: np.ndarray  # exact normalized values (x − μ)·r or x·r, evaluated in binary64
    err_n: np.ndarray  # bound on |n̂ − n| for the kernel's n̂ = fl(fl(x − μ̂)·r̂)
    r: np.ndarray  # exact 1/scale per row
    rho_R: np.ndarray  # bound on |r̂/r − 1| per row
    rho_stat: np.ndarray  # its statistic's part: bound on |z/r − 1|, z = 1/scalê exactly (no rsqrt error)
    mean_err: np.ndarray  # bound Δ on |μ̂ − μ| per row (0 without a mean), DAZ's shift included
    unsafe: np.ndarray  # rows with no bound (possible overflow, inputs the accumulator cannot hold)
    acc: FloatFormat
    eta: float  # one rounding's absolute underflow error in the accumulator
    eta_in: float  # DAZ: how far a loaded input may move (0 without DAZ)
    gammas: Gammas
    d: int


def normalized_error(op: str, x: np.ndarray, model: Model, eps: float, kind: str, lam: float = LAMBDA,
                     scale_only: bool = False) -> Normalized:
    """Steps 1–5 of the derivation: the normalized values n̂ the kernel computes, bounded.

    `scale_only` (probabilistic kind, λ = 1): rho_stat is then a sub-Gaussian scale of the
    statistic's part, not a bound (`_scale_error`); bounds_backward's row scales use it.

    Infinite and NaN intermediates (an infinite γ_k, ρ ≥ 1) are expected here: no warnings.
    """
    with np.errstate(all="ignore"):
        return _normalized_error(op, x, model, eps, kind, lam, scale_only)


def _normalized_error(op, x, model, eps, kind, lam, scale_only=False):
    acc = FORMATS[model.acc]
    u, eta = acc.unit_roundoff, _eta(acc, model.ftz)
    g = Gammas(u, kind, lam)
    rows, n = x.shape
    d = n + 1 if op == "crmsnorm" else n
    mean_err, stat, err_stat = _stat_error(op, model, x, d, g, u, eta)
    # DAZ moves each input by at most η_in: the mean by η_in, the root of the statistic by
    # 2η_in (it is a Euclidean norm of the centred row over sqrt(d)), each n_i by η_in·r.
    eta_in = acc.min_normal if model.ftz else 0.0
    mean_err = mean_err + (eta_in if op == "layernorm" else 0.0)
    err_stat = err_stat + 4 * eta_in * np.sqrt(stat) + 4 * eta_in**2
    r, rho_R, rho_stat = _scale_error(model, stat, err_stat, eps, u, eta, acc if kind == "probabilistic" else None,
                                     scale_only)
    centred = x - x.mean(axis=1, keepdims=True) if op == "layernorm" else x
    n_values = centred * r[:, None]
    # n̂ = fl(fl(x − μ̂)·r̂): two roundings for LayerNorm, the product alone otherwise
    rho_N = (1 + rho_R) * (1 + u) ** (2 if op == "layernorm" else 1) - 1
    err_n = rho_N[:, None] * np.abs(n_values) + ((1 + rho_N) * (mean_err + eta_in) * r)[:, None] + eta
    err_n = np.where(np.isnan(err_n), np.inf, err_n)  # 0·inf: an infinite γ_k (k·u ≥ 1)
    unsafe = np.abs(x).max(axis=1) > overflow_threshold(op, model, n)
    if op == "crmsnorm":
        # the row's own sums, not n·max|x| (the width-only threshold assumes all n entries at
        # max|x| with one sign): a computed partial sum of x is at most M·Σ|x| and of x² at most
        # M·Σx² (M the rounding margin), and ŝ1·ŝ1 + ŝ2 takes at most two more roundings
        margin, grow = rounding_margin(model, n), 1 + acc.unit_roundoff
        s1_top = np.abs(x).sum(axis=1) * margin
        stat_top = (s1_top * s1_top * grow + (x * x).sum(axis=1) * margin) * grow
        unsafe = (stat_top > acc.max_finite) | (s1_top > acc.max_finite)
    # inputs must be exact in the accumulator (bf16 accumulation of fp32 data is not modelled)
    unsafe |= ~acc.is_representable(x).all(axis=1)
    return Normalized(n_values, err_n, r, rho_R, rho_stat, mean_err, unsafe, acc, eta, eta_in, g, d)


def _forward_bound(op, x, w, b, model, eps, affine, out_format, kind):
    out = FORMATS[out_format] if isinstance(out_format, str) else out_format
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    rows, n = x.shape
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    b = np.zeros(n) if b is None else np.asarray(b, dtype=np.float64)
    norm = normalized_error(op, x, model, eps, kind)
    acc, u, eta = norm.acc, norm.acc.unit_roundoff, norm.eta
    n_abs, err_n = np.abs(norm.n), norm.err_n
    offset_u = acc.unit_roundoff if model.offset_format is None else FORMATS[model.offset_format].unit_roundoff
    u_o, eta_o = out.unit_roundoff, out.min_subnormal / 2
    if model.output == "llama":
        err_n = err_n + u_o * (n_abs + err_n) + eta_o
        z_abs, pre = _affine_error(affine, n_abs, err_n, w, b, u_o, eta_o, offset_u)
        total = pre
    else:
        z_abs, pre = _affine_error(affine, n_abs, err_n, w, b, u, eta, offset_u)
        if out.precision >= acc.precision:
            total = pre
        elif model.output == "truncate":
            total = pre + 2 * u_o * (z_abs + pre) + 2 * eta_o
        else:
            total = pre + u_o * (z_abs + pre) + eta_o
    unsafe = norm.unsafe.copy()
    affine_format = out if model.output == "llama" else acc
    if not (affine_format.is_representable(w).all() and affine_format.is_representable(b).all()):
        unsafe[:] = True  # weights must be exact where they are used (fp16 weights in bf16: no)
    pre = np.where(unsafe[:, None], np.inf, pre * SAFETY)
    total = np.where(unsafe[:, None] | (z_abs + total > out.max_finite), np.inf, total * SAFETY)
    return pre, total
