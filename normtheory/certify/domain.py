"""Safe-domain bisection over the input scale.

A probe is one normal row rescaled so that max |x| = 2^k (then rounded to the format). It
passes when every output is finite where the exact result is finite in the output format
and every error is within the contract's bound (forward and, when certified, backward).
Bisection over the integer k, assuming failures are monotone in scale on each side of
k = 0 (overflow above, collapse below); the families and the search look for non-monotone
failures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from normtheory.certify import inputs as input_gen
from normtheory.certify.runner import Batch

if TYPE_CHECKING:
    from normtheory.certify.engine import Certifier


def _probe(certifier: Certifier, k: int) -> bool:
    c = certifier.config
    rng = np.random.default_rng([c.seed, 30_000, k + 10_000])
    x = input_gen.scaled_rows(rng, 1, c.n, c.setting.fmt, 2.0**k)
    w, b = input_gen.draw_affine(rng, c.n, c.setting.w_fmt, c.setting.affine)
    gy = c.setting.fmt.round_to_float64(rng.standard_normal(x.shape), saturate=True) if c.backward else None
    residual = np.zeros_like(x) if c.setting.fused else None
    comparisons = certifier.run_batch(Batch(x, w, b, gy, residual, label=f"domain_2^{k}"))
    worst = max(float(np.max(np.nan_to_num(cmp.ratio, nan=0.0))) for cmp in comparisons.values())
    finite = not any(cmp.nonfinite.any() for cmp in comparisons.values())
    certifier.state.domain_probes.append((2.0**k, worst, finite))
    return finite and worst <= 1


def _bisect(certifier: Certifier, good: int, bad: int, budget: list[int]) -> int:
    """Largest (or smallest, when bad < good) k that passes, between a passing and a failing k."""
    while abs(bad - good) > 1 and budget[0] > 0:
        mid = (good + bad) // 2
        budget[0] -= 1
        if _probe(certifier, mid):
            good = mid
        else:
            bad = mid
    return good


def bisect_safe_domain(certifier: Certifier, probes: int) -> None:
    c = certifier.config
    fmt = c.setting.fmt
    k_top = math.floor(math.log2(c.max_abs))
    k_bottom = fmt.emin - fmt.precision + 3  # the row's largest entry a few ulps above the smallest subnormal
    budget = [max(probes, 3)]
    state = certifier.state
    result: dict[str, float | str | None] = {"certified_max_abs": c.max_abs, "probes": 0}
    budget[0] -= 1
    if not _probe(certifier, 0):
        state.findings.append("fails the contract on normal rows with max |x| = 1")
        state.domain_failures += 1
        result.update(max_abs=None, min_abs=None)
        state.domain = result
        return
    budget[0] -= 1
    top_ok = _probe(certifier, k_top)
    largest = k_top if top_ok else _bisect(certifier, 0, k_top, budget)
    budget[0] -= 1
    bottom_ok = budget[0] >= 0 and _probe(certifier, k_bottom)
    smallest = k_bottom if bottom_ok else _bisect(certifier, 0, k_bottom, budget)
    result.update(max_abs=2.0**largest, max_abs_hex=(2.0**largest).hex(), min_abs=2.0**smallest,
                  min_abs_hex=(2.0**smallest).hex(), overflow_or_failure_from=None if top_ok else 2.0**(largest + 1),
                  collapse_below=None if bottom_ok else 2.0**smallest)
    result["probes"] = len(state.domain_probes)
    state.domain_failures += (not top_ok) + (not bottom_ok)
    if not top_ok:
        state.findings.append(
            f"fails inside the domain for rows with max |x| ≥ 2^{largest + 1} = {2.0**(largest + 1):g} "
            f"(overflow or error above the bound); safe up to 2^{largest}")
    if not bottom_ok:
        state.findings.append(
            f"outputs collapse for rows with max |x| ≤ 2^{smallest - 1} = {2.0**(smallest - 1):g}; "
            f"safe down to 2^{smallest}")
    state.domain = result
