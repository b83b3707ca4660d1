"""Tightness of the forward bounds, per model, measured in one run.

For each model and op (layernorm, rmsnorm) with fp32 output (so that no final low-precision
rounding hides the accumulated error):
- worst/bound: the largest error/worst-case-bound found over the structured families and
  several widths (must reach >= 0.1 somewhere for the bound to be called tight);
- no tiny: the same without the subnormal family (where absolute underflow terms rule);
- prob/p99.9: the probabilistic bound over the 99.9th percentile of the error, on random
  normal rows (a ratio >= 1 means the percentile is within the bound; <= 3 is the target),
  and the fraction of elements above the probabilistic bound.

    PYTHONPATH=. python benchmarks/bound_tightness.py [--rows 16] [--prob-rows 64]
"""

from __future__ import annotations

import argparse

import numpy as np

from normtheory.families import FAMILIES, draw_rows
from normtheory.formats import FORMATS
from normtheory.precision.bounds import forward_bound
from normtheory.precision.emulate import forward
from normtheory.precision.measure import absolute_errors, exact_outputs
from normtheory.precision.models import MODELS

EPS = 1e-5
WIDTHS = (4, 16, 64, 256)


def _input_format(model):
    return FORMATS["bf16"] if model.acc == "bf16" else FORMATS["fp16"] if model.acc == "fp16" else FORMATS["fp32"]


def worst_ratio(model, op, rows, seed):
    fmt = _input_format(model)
    best, best_normal_range = (0.0, ""), (0.0, "")
    rng = np.random.default_rng(seed)
    for d in WIDTHS:
        for family in sorted(FAMILIES):
            x = draw_rows(family, rng, rows, d, fmt)
            exact = exact_outputs(op, x, eps=EPS, eps_mode=model.eps_mode)["y"]
            y = forward(op, x, model=model, eps=EPS, out_format="fp32")
            bound = forward_bound(op, x, model=model, eps=EPS, out_format="fp32").pre_rounding
            err = absolute_errors(y, exact)
            ok = np.isfinite(bound) & (bound > 0)
            if ok.any():
                ratio = float(np.max(err[ok] / bound[ok]))
                if ratio > best[0]:
                    best = (ratio, f"{family} d={d}")
                # without subnormal inputs the absolute underflow terms η cannot dominate
                if family != "tiny" and ratio > best_normal_range[0]:
                    best_normal_range = (ratio, f"{family} d={d}")
    return best, best_normal_range


def probabilistic_ratio(model, op, rows, d, seed):
    fmt = _input_format(model)
    x = draw_rows("normal", np.random.default_rng(seed), rows, d, fmt)
    exact = exact_outputs(op, x, eps=EPS, eps_mode=model.eps_mode)["y"]
    y = forward(op, x, model=model, eps=EPS, out_format="fp32")
    bound = forward_bound(op, x, model=model, eps=EPS, out_format="fp32", kind="probabilistic").pre_rounding
    err = absolute_errors(y, exact)
    p999 = np.quantile(err / bound, 0.999)
    return (1.0 / p999 if p999 > 0 else np.inf), float(np.mean(err > bound))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--prob-rows", type=int, default=64)
    parser.add_argument("--prob-d", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"{'model':20s} {'op':10s} {'worst/bound':>11s}  {'where':20s} {'no tiny':>8s}  {'where':22s}"
          f" {'prob/p99.9':>10s} {'frac>prob':>9s}")
    for name, model in MODELS.items():
        for op in ("layernorm", "rmsnorm"):
            (ratio, where), (ratio_n, where_n) = worst_ratio(model, op, args.rows, args.seed)
            prob, above = probabilistic_ratio(model, op, args.prob_rows, args.prob_d, args.seed + 1)
            print(f"{name:20s} {op:10s} {ratio:11.3g}  {where:20s} {ratio_n:8.3g}  {where_n:22s}"
                  f" {prob:10.3g} {above:9.2e}", flush=True)


if __name__ == "__main__":
    main()
