"""`normtheory lp --p P --format FMT --d D [--json OUT]`: the stability table of one Lp setting.

The table is computed by normtheory/theory/lp/table.py (see there for what it holds); the
certifier's verdict column is a quick `normtheory certify` unless `CERTIFIER` overrides it.
Exit 0 when every measurement agrees with its prediction, 1 otherwise, 2 on bad input.
The table's module imports torch, so it is imported inside run(): `normtheory --help` stays fast.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from normtheory.errors import UsageError
from normtheory.output_files import check_writable, write_text_file
from normtheory.registry import parse_p

FORMAT_CHOICES = ("fp16", "bf16", "fp32")
ACC_CHOICES = ("fp32", "fp16", "bf16")

# The certifier's verdict on a catalog kernel: fn(kernel_name, *, p, format, d, eps, seed) ->
# "pass" | "fail"; None means a quick real certification (tests replace it with a stub).
CERTIFIER: Callable[..., str] | None = None


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
    check_writable(args.json, flag="--json")  # before minutes of work
    if args.survey_step < 1:
        raise UsageError(f"--survey-step must be >= 1, got {args.survey_step}")
    return p, d, eps


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
    from normtheory.theory.lp.table import stability_table  # imports torch

    p, d, eps = _parse(args)
    table = stability_table(p, args.format, d, eps, acc=args.acc, seed=args.seed, survey_step=args.survey_step,
                            certifier=CERTIFIER)
    print_table(table)
    if args.json:
        write_text_file(args.json, json.dumps(table, indent=1))  # an OSError here is output_files' UsageError
    return 0 if table["verdict"] == "pass" else 1
