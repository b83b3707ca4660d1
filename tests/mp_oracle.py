"""An independent reference for the tests: the registry's formulas written directly in mpmath
at 300 bits, gradients by mpmath's numerical differentiation. It shares no code with
normtheory.reference (only the formats' rounding of the final mpmath numbers)."""

from __future__ import annotations

import math

import mpmath
import numpy as np

PREC = 300


def _normalizer(op, X, eps, eps_mode, p, d):
    mpf = mpmath.mpf
    if op == "layernorm":
        mean = mpmath.fsum(X) / d
        c = [v - mean for v in X]
        power_mean, q = mpmath.fsum(ci**2 for ci in c) / d, 2
    elif op == "rmsnorm":
        c, power_mean, q = X, mpmath.fsum(v**2 for v in X) / d, 2
    elif op == "crmsnorm":
        c, power_mean, q = X, (mpmath.fsum(v**2 for v in X) + mpmath.fsum(X) ** 2) / d, 2
    elif op == "l2normalize":  # torch.nn.functional.normalize: eps floors the norm itself
        norm = mpmath.sqrt(mpmath.fsum(v**2 for v in X))
        return X, (max(norm, mpf(eps)) if eps_mode == "inside" else norm + eps)
    else:
        c, q = X, p
        if math.isinf(p):
            top = max(abs(v) for v in X)
            return c, (max(top, mpmath.sqrt(eps)) if eps_mode == "inside" else top + eps)
        power_mean = mpmath.fsum(abs(v) ** p for v in X) / d
    if eps_mode == "inside":
        return c, (power_mean + mpf(eps) ** (mpf(q) / 2)) ** (1 / mpf(q))
    return c, power_mean ** (1 / mpf(q)) + eps


def _mp(value):
    """Exact conversion; mpmath numbers pass through (numerical differentiation perturbs them)."""
    return value if isinstance(value, mpmath.mpf) else mpmath.mpf(float(value))


def forward_row(op, x_row, w, b, *, eps, eps_mode, affine, p, d):
    """Exact-at-300-bits y for one row (mpmath numbers); NaN for 0/0."""
    # never lower the precision: mpmath.diff raises it and perturbs x by a tiny step
    with mpmath.workprec(max(PREC, mpmath.mp.prec)):
        X = [_mp(v) for v in x_row]
        c, N = _normalizer(op, X, mpmath.mpf(eps), eps_mode, p, d)
        if N == 0:
            return [mpmath.nan] * len(X)
        out = []
        for j, cj in enumerate(c):
            y = cj / N
            if affine in ("weight", "weight_bias"):
                y = y * _mp(w[j])
            elif affine == "offset_weight":
                y = y * (1 + _mp(w[j]))
            if affine == "weight_bias":
                y = y + _mp(b[j])
            out.append(y)
        return out


def vjp(op, x, w, b, gy, *, eps, eps_mode, affine, p, d):
    """gx (rows, n), gw (n,), gb (n,) by numerical differentiation of Σ gy·y."""
    rows, n = x.shape

    def loss_of_row(i, values, w_vec, b_vec):
        ys = forward_row(op, values, w_vec, b_vec, eps=eps, eps_mode=eps_mode, affine=affine, p=p, d=d)
        return mpmath.fsum(mpmath.mpf(float(gy[i, j])) * ys[j] for j in range(n))

    with mpmath.workprec(PREC):
        gx = np.empty((rows, n), dtype=object)
        for i in range(rows):
            for j in range(n):
                def along_x(t, i=i, j=j):
                    values = [mpmath.mpf(float(v)) for v in x[i]]
                    values[j] = t
                    return loss_of_row(i, values, w, b)
                gx[i, j] = mpmath.diff(along_x, mpmath.mpf(float(x[i, j])))
        gw = np.empty(n, dtype=object)
        gb = np.empty(n, dtype=object)
        for j in range(n):
            def along_w(t, j=j):
                w_vec = [mpmath.mpf(float(v)) for v in w]
                w_vec[j] = t
                return mpmath.fsum(loss_of_row(i, x[i], w_vec, b) for i in range(rows))

            def along_b(t, j=j):
                b_vec = [mpmath.mpf(float(v)) for v in b]
                b_vec[j] = t
                return mpmath.fsum(loss_of_row(i, x[i], w, b_vec) for i in range(rows))
            gw[j] = mpmath.diff(along_w, mpmath.mpf(float(w[j])))
            gb[j] = mpmath.diff(along_b, mpmath.mpf(float(b[j])))
    return gx, gw, gb


def round_oracle(values, fmt):
    """(rounded values, ambiguous mask): ambiguous where the oracle is within 2^-200 (relative) of a
    rounding midpoint, since 300-bit arithmetic cannot decide those (they are tested exactly
    elsewhere)."""
    values = np.asarray(values, dtype=object)
    out = np.empty(values.shape)
    ambiguous = np.zeros(values.shape, dtype=bool)
    for index, value in np.ndenumerate(values):
        if mpmath.isnan(value):
            out[index] = np.nan
            continue
        rounded = float(fmt.round(np.array([value], dtype=object)).astype(np.float64)[0])
        if value != 0 and math.isfinite(rounded):
            spacing = float(fmt.ulp(np.array([rounded]))[0])
            distance_to_mid = abs(abs(value - rounded) - mpmath.mpf(spacing) / 2)
            if distance_to_mid < abs(value) * mpmath.mpf(2) ** -200:
                ambiguous[index] = True
        out[index] = rounded
    return out, ambiguous
