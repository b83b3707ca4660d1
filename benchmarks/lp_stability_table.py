"""The p × format stability table of the Lp kernels (what `normtheory lp` reports, for a grid).

    PYTHONPATH=. python benchmarks/lp_stability_table.py [--d 1024] [--survey-d 64]

Per (p, format): the naive kernel's predicted and measured safe range (fp32 accumulation,
constant rows: the worst case at a given max|x|), the stable kernel's, the worst error of the
stable kernel in ulps against the correctly rounded reference and as a fraction of its bound
over every binade of the format (rows of width --survey-d), and the Jacobian's relative
condition at Gaussian rows of width --d. Writes docs/figures/lp_stability.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

P_VALUES = (1.0, 1.5, 2.0, 3.0, 4.0, 8.0, math.inf)
FORMATS_ = ("fp16", "bf16", "fp32")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--survey-d", type=int, default=64)
    parser.add_argument("--eps", type=float, default=1e-6)
    parser.add_argument("--out", type=Path, default=Path("docs/figures/lp_stability.json"))
    args = parser.parse_args(argv)

    import numpy as np

    from normtheory.kernels.lp import lp_norm_naive, lp_norm_stable
    from normtheory.theory.lp import conditioning as lp
    from normtheory.theory.lp.measure import smallest_failing_magnitude, stable_error_survey
    from normtheory.theory.lp.thresholds import naive_safe_range

    rng = np.random.default_rng(0)
    gaussian = rng.standard_normal((256, args.d))
    rows = []
    start = time.perf_counter()
    for p in P_VALUES:
        kappa = lp.relative_condition(gaussian, p, args.eps)
        for fmt in FORMATS_:
            predicted = naive_safe_range(p, args.d, args.eps, fmt)
            survey = stable_error_survey(lp_norm_stable, fmt, p, args.survey_d, args.eps, step=1, seed=0)
            rows.append({
                "p": "inf" if math.isinf(p) else p, "format": fmt, "d": args.d,
                "naive_predicted_max": predicted.high, "naive_whole_range": predicted.whole_range,
                "naive_measured_overflow_at": smallest_failing_magnitude(lp_norm_naive, args.d, fmt, args.eps, p, low=1.0),
                "stable_measured_failure_at": smallest_failing_magnitude(lp_norm_stable, args.d, fmt, args.eps, p),
                "stable_worst_ulps": survey["max_ulps"], "stable_worst_err_over_bound": survey["max_err_over_bound"],
                "survey_rows": survey["rows"], "survey_d": args.survey_d,
                "kappa_median": float(np.median(kappa)), "kappa_limit": lp.gaussian_condition_limit(p, args.d),
            })
    elapsed = time.perf_counter() - start
    print(f"| p | format | naive safe max|x| (predicted) | naive overflows at (measured) | stable | "
          f"stable worst ulps (d={args.survey_d}, every binade) | worst err/bound | κ_rel median (d={args.d}) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        naive = "whole range" if r["naive_whole_range"] else f"{r['naive_predicted_max']:.4g}"
        measured = "none" if r["naive_measured_overflow_at"] is None else f"{r['naive_measured_overflow_at']:.4g}"
        stable = "whole range" if r["stable_measured_failure_at"] is None else f"fails at {r['stable_measured_failure_at']:.4g}"
        print(f"| {r['p']} | {r['format']} | {naive} | {measured} | {stable} | {r['stable_worst_ulps']:g} | "
              f"{r['stable_worst_err_over_bound']:.3f} | {r['kappa_median']:.4f} |")
    print(f"({elapsed:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"eps": args.eps, "elapsed_s": elapsed, "rows": rows}, indent=1))
    ok = all(r["stable_measured_failure_at"] is None and r["stable_worst_err_over_bound"] <= 1 for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
