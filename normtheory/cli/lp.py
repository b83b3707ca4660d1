"""`normtheory lp --p P --format FMT --d D [--json OUT]`: the stability table of one Lp setting.

For the naive (power, sum, root) and the stable (rescale by max|x| first) kernels of
normtheory.kernels.lp: the predicted safe input range (theory/lp/thresholds.py) next to the one
measured on the torch kernels, the Jacobian's conditioning at typical (Gaussian) inputs
(theory/lp/conditioning.py), the stable kernel's a-priori error bound (precision/bounds/lp.py) and its worst
error found over the whole finite range of the format against the reference, and the
certifier's verdict on both kernels (a quick `normtheory certify`; `CERTIFIER` overrides it).
Exit 0 when every measurement agrees with its prediction, 1 otherwise, 2 on bad input.
torch is imported inside run(): `normtheory --help` must stay fast.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from normtheory.errors import UsageError

SCHEMA = "normtheory.lp/1"
FORMAT_CHOICES = ("fp16", "bf16", "fp32")
ACC_CHOICES = ("fp32", "fp16", "bf16")

# The certifier's verdict on a catalog kernel: fn(kernel_name, *, p, format, d, eps, seed) ->
# "pass" | "fail". None until normtheory.certify provides it; the table then says so.
CERTIFIER: Callable[..., str] | None = None
KERNEL_NAMES = {"naive": "lp.naive", "stable": "lp.stable"}


def configure(parser) -> None:
    parser.add_argument("--p", required=True, help="the exponent: a number >= 1, or inf")
    parser.add_argument("--format", required=True, help=f"input/output format: {', '.join(FORMAT_CHOICES)}")
    parser.add_argument("--d", required=True, help="model width (entries per row), >= 2")
    parser.add_argument("--eps", default="1e-6", help="eps (an RMS floor sqrt(eps) for every p; default 1e-6)")
    parser.add_argument("--acc", default="fp32", help="the naive kernel's accumulator: fp32 (default), fp16, bf16")
    parser.add_argument("--seed", type=int, default=0, help="seed of the typical inputs and the survey (default 0)")
    parser.add_argument("--survey-step", type=int, default=4,
                        help="survey at least every k-th binade of the format for the stable kernel's errors "
                             "(default 4; wider rows raise it to keep the survey near 2^16 elements)")
    parser.add_argument("--json", metavar="OUT.json", help="write the table as JSON")


def _parse(args):
    from normtheory.registry import parse_p

    p = parse_p(args.p)
    if args.format not in FORMAT_CHOICES:
        raise UsageError(f"--format must be one of {', '.join(FORMAT_CHOICES)}, got {args.format!r}")
    if args.acc not in ACC_CHOICES:
        raise UsageError(f"--acc must be one of {', '.join(ACC_CHOICES)}, got {args.acc!r}")
    try:
        d = int(args.d)
    except ValueError:
        raise UsageError(f"--d must be an integer >= 2, got {args.d!r}") from None
    if not 2 <= d <= 2**16:
        raise UsageError(f"--d must be between 2 and 65536, got {d}")
    try:
        eps = float(args.eps)
    except ValueError:
        raise UsageError(f"--eps must be a number, got {args.eps!r}") from None
    if not (eps >= 0 and math.isfinite(eps)):
        raise UsageError(f"--eps must be finite and >= 0, got {args.eps!r}")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise UsageError(f"cannot write {args.json}: no such directory")  # before minutes of work
    if args.survey_step < 1:
        raise UsageError(f"--survey-step must be >= 1, got {args.survey_step}")
    return p, d, eps


def stability_table(p: float, fmt: str, d: int, eps: float, acc: str = "fp32", seed: int = 0,
                    survey_step: int = 4) -> dict:
    """Everything `normtheory lp` reports, as a JSON-ready dict (floats as numbers and hex)."""
    import numpy as np

    from normtheory.formats import FORMATS
    from normtheory.kernels.dtypes import TORCH_DTYPES
    from normtheory.kernels.lp import lp_norm_naive, lp_norm_stable
    from normtheory.precision.bounds.lp import stable_forward_bound
    from normtheory.theory.lp import conditioning as lp
    from normtheory.theory.lp import thresholds as th
    from normtheory.theory.lp.measure import largest_failing_magnitude, smallest_failing_magnitude, stable_error_survey

    fmt_obj = FORMATS[fmt]
    acc_dtype = TORCH_DTYPES[acc]
    naive_pred = th.naive_safe_range(p, d, eps, fmt, acc)
    stable_pred = th.stable_safe_range(p, d, eps, fmt)
    naive_high = smallest_failing_magnitude(lp_norm_naive, d, fmt, eps, p, low=1.0, acc_dtype=acc_dtype)
    naive_low = largest_failing_magnitude(lp_norm_naive, d, fmt, eps, p, high=1.0, acc_dtype=acc_dtype)
    stable_high = smallest_failing_magnitude(lp_norm_stable, d, fmt, eps, p, low=1.0)
    stable_low = largest_failing_magnitude(lp_norm_stable, d, fmt, eps, p, high=1.0)

    def within_binade(measured, predicted, edge):
        if predicted >= edge:  # the prediction says: nothing fails inside the format
            return measured is None
        return measured is not None and predicted / 2 <= measured <= predicted * 2

    checks = {
        "naive_overflow": within_binade(naive_high, naive_pred.high, fmt_obj.max_finite),
        "naive_underflow": (naive_low is None) if naive_pred.low == 0 else
        (naive_low is not None and naive_pred.low / 2 <= naive_low <= naive_pred.low * 2),
        "stable_no_failure": stable_high is None and (stable_low is None or eps == 0),
    }
    rng = np.random.default_rng(seed)
    typical = rng.standard_normal((256, d))
    kappa = lp.relative_condition(typical, p, eps)
    jac_cond = lp.jacobian_condition(typical, p, eps)
    rounded = fmt_obj.round_to_float64(typical)
    bound = stable_forward_bound(rounded, p=p, eps=eps, out_format=fmt).total
    with np.errstate(divide="ignore", invalid="ignore"):
        y = rounded / lp.power_mean_norm(rounded, p, eps)[:, None]
        bound_ulps = bound / fmt_obj.ulp(y)
    # the survey costs one arbitrary-precision evaluation per element: cap it near 2^16 elements
    binades = fmt_obj.emax - (fmt_obj.emin - fmt_obj.precision + 1) + 1
    step = max(survey_step, math.ceil(binades * 4 * d / 2**16))
    survey = stable_error_survey(lp_norm_stable, fmt, p, d, eps, seed=seed, step=step)
    survey["binade_step"] = step
    checks["stable_within_bound"] = survey["max_err_over_bound"] <= 1 and survey["nonfinite_rows"] == 0
    verdicts = {}
    if CERTIFIER is None:
        from normtheory.certify.api import certifier_verdict as certifier
    else:
        certifier = CERTIFIER
    for key, name in KERNEL_NAMES.items():
        verdicts[key] = certifier(name, p=p, format=fmt, d=d, eps=eps, seed=seed)
    return {
        "schema": SCHEMA,
        "p": "inf" if math.isinf(p) else p, "format": fmt, "d": d, "eps": eps, "naive_accumulator": acc,
        "safe_range": {
            "naive": {"predicted": naive_pred.as_dict(), "measured_overflow_at": naive_high,
                      "measured_underflow_up_to": naive_low},
            "stable": {"predicted": stable_pred.as_dict(), "measured_overflow_at": stable_high,
                       "measured_underflow_up_to": stable_low},
        },
        "floor_lost_in_naive_from_p": th.floor_lost_from_p(eps, acc),
        "eps_collapse_power_mean": th.eps_collapse_power_mean(p, eps),
        "jacobian_at_gaussian_rows": {
            "rows": int(typical.shape[0]),
            "relative_condition_median": float(np.median(kappa)),
            "relative_condition_max": float(kappa.max()),
            "relative_condition_gaussian_limit": lp.gaussian_condition_limit(p, d),
            "sigma_max_over_sigma_min_median": float(np.median(jac_cond)),
        },
        "stable_bound_at_gaussian_rows_ulps": {"median": float(np.median(bound_ulps)),
                                               "max": float(np.max(bound_ulps))},
        "stable_survey": survey,
        "certifier": verdicts,
        "checks": checks,
        "verdict": "pass" if all(checks.values()) else "fail",
    }


def _fmt_num(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, float) and (value == 0 or math.isinf(value)):
        return str(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_table(table: dict) -> None:
    sr = table["safe_range"]
    print(f"Lp normalizer p={table['p']} format={table['format']} d={table['d']} eps={table['eps']:g} "
          f"(naive accumulator {table['naive_accumulator']})")
    print(f"{'kernel':8} {'predicted safe max|x|':>28} {'measured overflow at':>22} {'measured underflow up to':>26}")
    for kernel in ("naive", "stable"):
        pred = sr[kernel]["predicted"]
        span = "whole finite range" if pred["whole_range"] else f"[{_fmt_num(pred['low'])}, {_fmt_num(pred['high'])}]"
        print(f"{kernel:8} {span:>28} {_fmt_num(sr[kernel]['measured_overflow_at']):>22} "
              f"{_fmt_num(sr[kernel]['measured_underflow_up_to']):>26}")
    jac = table["jacobian_at_gaussian_rows"]
    print(f"Jacobian at Gaussian rows: relative condition median {jac['relative_condition_median']:.4g} "
          f"(max {jac['relative_condition_max']:.4g}; d -> inf: {jac['relative_condition_gaussian_limit']:.4g}), "
          f"sigma_max/sigma_min median {jac['sigma_max_over_sigma_min_median']:.4g}")
    bound = table["stable_bound_at_gaussian_rows_ulps"]
    survey = table["stable_survey"]
    print(f"stable kernel bound at Gaussian rows: median {bound['median']:.3g} ulps, max {bound['max']:.3g} ulps; "
          f"survey of {survey['rows']} rows (every {survey['binade_step']}th binade): worst {survey['max_ulps']:.3g} ulps, "
          f"worst error/bound {survey['max_err_over_bound']:.3g}")
    print(f"certifier: naive {table['certifier']['naive']}, stable {table['certifier']['stable']}")
    failed = [name for name, ok in table["checks"].items() if not ok]
    print(f"verdict: {table['verdict']}" + (f" ({', '.join(failed)})" if failed else ""))


def run(args) -> int:
    p, d, eps = _parse(args)
    table = stability_table(p, args.format, d, eps, acc=args.acc, seed=args.seed, survey_step=args.survey_step)
    print_table(table)
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(table, indent=1))
        except OSError as exc:
            raise UsageError(f"cannot write {args.json}: {exc.strerror or exc}") from None
    return 0 if table["verdict"] == "pass" else 1
