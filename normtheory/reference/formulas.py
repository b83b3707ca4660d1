"""The normalizers' formulas for one row, written once over a ring (arb balls or exact surds).

Forward, for a row x of n entries and model width d (n = d - 1 for CRMSNorm):
    c = x - mean(x) (LayerNorm) or x;   N = normalizer (see registry.py);   ŷ = c / N
    y = ŷ, ŷ·w, ŷ·w + b or ŷ·(1 + w) by affine mode.
Backward (vector-Jacobian product for an incoming gradient gy), with g = gy·w̃ (w̃ = 1, w or
1 + w) and r = 1/N, one formula covers every op and eps placement:
    gx_j = r · (g_j − [centred ops] mean(g) − ρ · (Σ_i g_i ŷ_i / D) · φ_j)
with D the statistic's divisor (NormSpec.statistic_divisor: d for the mean statistics, 1 for a
plain sum), and φ_j (the direction in which N moves with x_j, scaled so that LayerNorm/RMSNorm
give φ = ŷ) is, per statistic:
    a sum of squares (LayerNorm's, RMSNorm's, ...):  φ_j = ŷ_j
    CRMSNorm:            φ_j = ŷ_j + Σ_i ŷ_i
    Lp, 1 <= p < inf:    φ_j = sign(x_j)·|ŷ_j|^(p-1)
    Lp, p = inf:         φ_j = d·sign(x_j)/k on the k entries of largest |x| (0 where the √eps
                         floor is the max; ties split evenly, as torch's amax does)
and ρ = 1 with eps inside; with eps outside (N = σ + eps, σ the root) ρ = (N/σ)^(p-1)
(p = 2 for the RMS family), and 0 when σ = 0 (then every ŷ is 0 and the term vanishes).
An eps floor that pins N on some rows (reference/statistic_rules.EXACT_FLOORS) gives ρ = 0
there: N does not move with x, gx = r·g.
gw_j = Σ_rows gy·ŷ (weight modes), gb_j = Σ_rows gy. The derivations are in proofs/.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from normtheory.reference.statistic_rules import EXACT_FLOORS, EXACT_STATISTICS, ring_sum
from normtheory.registry import NormParams


def row_is_degenerate(params: NormParams, x_row: np.ndarray) -> bool:
    """True when the row's statistic is exactly 0 (constant row for LayerNorm, zero row else)."""
    if params.spec.centred:
        return bool(np.all(x_row == x_row[0]))
    return bool(np.all(x_row == 0))


def row_is_nan(params: NormParams, x_row: np.ndarray) -> bool:
    """0/0 rows: a degenerate statistic with eps = 0 has no value (output NaN)."""
    return params.eps == 0 and row_is_degenerate(params, x_row)


class RowMath:
    """Exact formulas of one row over `ring`. Statistics are computed once; elements on demand."""

    def __init__(self, ring, params: NormParams, x_row, w=None, b=None, gy_row=None, d=None):
        self.ring, self.params = ring, params
        self.x = np.asarray(x_row, dtype=np.float64)
        n = self.x.size
        self.d = d if d is not None else params.spec.model_width(n)
        self.w, self.b, self.gy = w, b, gy_row
        self.divisor = params.spec.statistic_divisor(n)  # d, or 1 for a plain sum (K = ρ·Σgŷ/divisor)
        self.degenerate = row_is_degenerate(params, self.x)
        R = ring
        X = [R.const(v) for v in self.x]
        if params.spec.centred:
            mean = ring_sum(R, X) / self.d
            self.c = [xi - mean for xi in X]
        else:
            self.c = X
        self._normalizer(X)
        self.r = R.one / self.N
        self.yn = [ci * self.r for ci in self.c]
        self._backward_ready = False

    # ---- statistics ------------------------------------------------------------------
    def _normalizer(self, X):
        """N, ρ (and p_eff) of the row: the op's statistic and eps floor (reference/statistic_rules.py)."""
        spec = self.params.spec
        if spec.takes_p:
            self._lp_normalizer()
            return
        s = EXACT_STATISTICS[spec.statistic](self.ring, X, self.c, self.divisor)
        self._root(s, 2.0)

    def _root(self, s, p_eff: float):
        """N from the statistic s: the op's floor with eps inside, root + eps outside (ρ = (N/σ)^(p−1))."""
        R, eps = self.ring, self.params.eps
        if self.params.eps_mode == "inside":
            self.N, self.rho = EXACT_FLOORS[self.params.spec.eps_floor](R, self.x, s, eps, p_eff)
        else:
            sigma = R.root(s, p_eff)
            self.N = sigma + R.const(eps)
            if not self.degenerate:
                ratio = self.N / sigma
                self.rho = ratio if p_eff == 2.0 else R.pow_elem(ratio, p_eff - 1)
            else:
                self.rho = R.zero  # σ = 0: ŷ = 0 everywhere, the ρ term vanishes
        self.p_eff = p_eff

    def _lp_normalizer(self):
        """Lp: the power mean (1/d)Σ|x|^p under the 1/p root; p = inf is the max norm."""
        R, params, d = self.ring, self.params, self.d
        eps, p = params.eps, params.p
        self.rho = R.one
        if math.isinf(p):
            self._max_norm(eps)
            return
        magnitudes = np.abs(self.x)
        if not self.degenerate and np.all(magnitudes == magnitudes[0]) and self.x.size == d:
            # equal magnitudes a: the p-th power mean is a^p, its root exactly a (this keeps
            # constant rows exact; through |x|^p and a p-th root no ball would ever be exact)
            top = R.const(float(magnitudes[0]))
            if params.eps_mode == "outside" or eps == 0:
                sigma = top
                self.N = sigma + R.const(eps) if params.eps_mode == "outside" else sigma
                if params.eps_mode == "outside":
                    self.rho = R.pow_elem(self.N / sigma, p - 1)
                self.p_eff = p
                return
        self._root(ring_sum(R, [R.abs_pow(v, p) for v in self.x]) / d, p)

    def _max_norm(self, eps: float):
        """p = inf: N = max(max|x|, √eps) (inside) or max|x| + eps (outside); exact comparisons."""
        R = self.ring
        magnitudes = np.abs(self.x)
        top = float(magnitudes.max()) if magnitudes.size else 0.0
        self.argmax = np.flatnonzero(magnitudes == top) if top > 0 else np.array([], dtype=int)
        if self.params.eps_mode == "inside":
            max_dominates = Fraction(top) ** 2 >= Fraction(eps) and top > 0
            self.N = R.const(top) if max_dominates else R.sqrt(R.const(eps))
            if not max_dominates:
                self.argmax = np.array([], dtype=int)
        else:
            self.N = R.const(top) + R.const(eps)
        self.p_eff = math.inf

    # ---- forward ---------------------------------------------------------------------
    def weight_factor(self, j):
        R, affine = self.ring, self.params.affine
        if affine == "none":
            return R.one
        if affine == "offset_weight":
            return R.one + R.const(self.w[j])
        return R.const(self.w[j])

    def y(self, j):
        value = self.yn[j] * self.weight_factor(j) if self.params.affine != "none" else self.yn[j]
        if self.params.affine == "weight_bias":
            value = value + self.ring.const(self.b[j])
        return value

    # ---- backward --------------------------------------------------------------------
    def _prepare_backward(self):
        R, d = self.ring, self.d
        self.g = [R.const(self.gy[j]) * self.weight_factor(j) for j in range(self.x.size)]
        self.mean_g = ring_sum(R, self.g) / d if self.params.spec.centred else R.zero
        G = ring_sum(R, [gi * yi for gi, yi in zip(self.g, self.yn)])
        self.K = self.rho * G / self.divisor
        self.sum_yn = ring_sum(R, self.yn) if self.params.spec.statistic == "crms" else R.zero
        self._backward_ready = True

    def phi(self, j):
        R, spec = self.ring, self.params.spec
        if spec.statistic == "crms":
            return self.yn[j] + self.sum_yn
        if not spec.takes_p:  # a sum of squares: φ = ŷ
            return self.yn[j]
        sign = int(np.sign(self.x[j]))
        if math.isinf(self.params.p):
            if j not in self.argmax:
                return R.zero
            return R.const(sign * self.d) / len(self.argmax)
        if sign == 0:
            return R.zero
        magnitude = R.pow_elem(self.yn[j], self.params.p - 1)
        return magnitude if sign > 0 else -magnitude

    def gx(self, j):
        if not self._backward_ready:
            self._prepare_backward()
        return self.r * (self.g[j] - self.mean_g - self.K * self.phi(j))

    def gw_term(self, j):
        """This row's contribution gy·∂y/∂w_j to gw_j (= gy·ŷ for weight and offset_weight)."""
        return self.ring.const(self.gy[j]) * self.yn[j]
