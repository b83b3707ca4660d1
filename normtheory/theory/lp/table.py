"""The stability table of one Lp setting (what `normtheory lp` prints), as a JSON-ready dict.

For the naive (power, sum, root) and the stable (rescale by max|x| first) kernels of
normtheory.kernels.lp: the predicted safe input range (thresholds.py) next to the one measured
on the torch kernels, the Jacobian's conditioning at typical (Gaussian) inputs
(conditioning.py), the stable kernel's a-priori error bound (precision/bounds/lp.py) and its
worst error over the whole finite range of the format against the reference (measure.py), and
the certifier's verdict on both kernels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from normtheory.certify.api import certifier_verdict
from normtheory.formats import FloatFormat, as_format
from normtheory.kernels.dtypes import TORCH_DTYPES
from normtheory.kernels.lp import lp_norm_naive, lp_norm_stable
from normtheory.precision.bounds.lp import stable_forward_bound
from normtheory.theory.lp import conditioning, thresholds
from normtheory.theory.lp.measure import largest_failing_magnitude, smallest_failing_magnitude, stable_error_survey

SCHEMA = "normtheory.lp/1"
KERNEL_NAMES = {"naive": "lp.naive", "stable": "lp.stable"}
SURVEY_ELEMENTS = 2**16  # the survey costs one arbitrary-precision evaluation per element

# fn(kernel_name, *, p, format, d, eps, seed) -> "pass" | "fail" | "not applicable"
Certifier = Callable[..., str]


def _within_a_binade(measured, predicted: float) -> bool:
    return measured is not None and predicted / 2 <= measured <= predicted * 2


def safe_ranges(p: float, fmt: FloatFormat, d: int, eps: float, acc: str) -> tuple[dict, dict]:
    """Predicted and measured safe input magnitudes of both kernels, and the checks on them."""
    acc_dtype = TORCH_DTYPES[acc]
    naive_pred = thresholds.naive_safe_range(p, d, eps, fmt.name, acc)
    stable_pred = thresholds.stable_safe_range(p, d, eps, fmt.name)
    naive_high = smallest_failing_magnitude(lp_norm_naive, d, fmt.name, eps, p, low=1.0, acc_dtype=acc_dtype)
    naive_low = largest_failing_magnitude(lp_norm_naive, d, fmt.name, eps, p, high=1.0, acc_dtype=acc_dtype)
    stable_high = smallest_failing_magnitude(lp_norm_stable, d, fmt.name, eps, p, low=1.0)
    stable_low = largest_failing_magnitude(lp_norm_stable, d, fmt.name, eps, p, high=1.0)
    # a prediction at or beyond the largest finite value says: nothing overflows inside the format
    naive_overflow_ok = (naive_high is None if naive_pred.high >= fmt.max_finite
                         else _within_a_binade(naive_high, naive_pred.high))
    naive_underflow_ok = naive_low is None if naive_pred.low == 0 else _within_a_binade(naive_low, naive_pred.low)
    checks = {
        "naive_overflow": naive_overflow_ok,
        "naive_underflow": naive_underflow_ok,
        "stable_no_failure": stable_high is None and (stable_low is None or eps == 0),
    }
    ranges = {
        "naive": {"predicted": naive_pred.as_dict(), "measured_overflow_at": naive_high,
                  "measured_underflow_up_to": naive_low},
        "stable": {"predicted": stable_pred.as_dict(), "measured_overflow_at": stable_high,
                   "measured_underflow_up_to": stable_low},
    }
    return ranges, checks


def conditioning_at_gaussian_rows(typical: np.ndarray, p: float, eps: float, d: int) -> dict:
    kappa = conditioning.relative_condition(typical, p, eps)
    return {
        "rows": int(typical.shape[0]),
        "relative_condition_median": float(np.median(kappa)),
        "relative_condition_max": float(kappa.max()),
        "relative_condition_gaussian_limit": conditioning.gaussian_condition_limit(p, d),
        "sigma_max_over_sigma_min_median": float(np.median(conditioning.jacobian_condition(typical, p, eps))),
    }


def stable_bound_in_ulps(typical: np.ndarray, p: float, eps: float, fmt: FloatFormat) -> dict:
    rounded = fmt.round_to_float64(typical)
    bound = stable_forward_bound(rounded, p=p, eps=eps, out_format=fmt.name).total
    with np.errstate(divide="ignore", invalid="ignore"):
        y = rounded / conditioning.power_mean_norm(rounded, p, eps)[:, None]
        bound_ulps = bound / fmt.ulp(y)
    return {"median": float(np.median(bound_ulps)), "max": float(np.max(bound_ulps))}


def stable_survey(p: float, fmt: FloatFormat, d: int, eps: float, seed: int, survey_step: int) -> dict:
    """The stable kernel's worst error over every k-th binade, k raised to keep ~2^16 elements."""
    binades = fmt.emax - (fmt.emin - fmt.precision + 1) + 1
    step = max(survey_step, math.ceil(binades * 4 * d / SURVEY_ELEMENTS))
    survey = stable_error_survey(lp_norm_stable, fmt.name, p, d, eps, seed=seed, step=step)
    survey["binade_step"] = step
    return survey


def stability_table(p: float, fmt: str | FloatFormat, d: int, eps: float, *, acc: str = "fp32", seed: int = 0,
                    survey_step: int = 4, certifier: Certifier | None = None) -> dict:
    """Everything `normtheory lp` reports; `certifier` defaults to a quick `normtheory certify`."""
    fmt = as_format(fmt)
    certifier = certifier or certifier_verdict
    ranges, checks = safe_ranges(p, fmt, d, eps, acc)
    typical = np.random.default_rng(seed).standard_normal((256, d))
    survey = stable_survey(p, fmt, d, eps, seed, survey_step)
    checks["stable_within_bound"] = survey["max_err_over_bound"] <= 1 and survey["nonfinite_rows"] == 0
    verdicts = {key: certifier(name, p=p, format=fmt.name, d=d, eps=eps, seed=seed) for key, name in KERNEL_NAMES.items()}
    return {
        "schema": SCHEMA,
        "p": "inf" if math.isinf(p) else p, "format": fmt.name, "d": d, "eps": eps, "naive_accumulator": acc,
        "safe_range": ranges,
        "floor_lost_in_naive_from_p": thresholds.floor_lost_from_p(eps, acc),
        "eps_collapse_power_mean": thresholds.eps_collapse_power_mean(p, eps),
        "jacobian_at_gaussian_rows": conditioning_at_gaussian_rows(typical, p, eps, d),
        "stable_bound_at_gaussian_rows_ulps": stable_bound_in_ulps(typical, p, eps, fmt),
        "stable_survey": survey,
        "certifier": verdicts,
        "checks": checks,
        "verdict": "pass" if all(checks.values()) else "fail",
    }
