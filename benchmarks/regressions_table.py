"""The real-regressions gallery table (docs/kernel_authors.md): for each regression of
normtheory.kernels.regressions, over --seeds seeds of its thread's inputs, how often the
anchor's own check flags the defect and the careful twin, and how often assert_close_to_exact
does, with the comparator's largest error/bound and share of violating elements.

    python benchmarks/regressions_table.py [--seeds 10] [--small]
"""

from __future__ import annotations

import argparse
import time

from normtheory.kernels.regressions import REGRESSIONS
from normtheory.testing import assert_close_to_exact


def _comparator(outputs, kwargs) -> tuple[bool, float, float]:
    """(flagged, max error/bound, share of violating elements in the worst output)."""
    try:
        verdict = assert_close_to_exact(outputs, **kwargs)
        return False, verdict.max_ratio, 0.0
    except AssertionError:
        from normtheory.testing.judge import judge
        from normtheory.testing.problem import parse_problem

        verdict = judge(parse_problem(outputs, **{"gy": None, "bias": None, "residual": None, "affine": None,
                                                  "eps_mode": "inside", "p": None, "contract": "default",
                                                  "scale": None, **kwargs}))
        worst = max(verdict.results.values(), key=lambda r: r.violations / max(r.elements, 1))
        return True, verdict.max_ratio, worst.violations / max(worst.elements, 1)


def measure(name: str, seeds: int, small: bool) -> dict:
    case = REGRESSIONS[name]
    counts = {"anchor_defect": 0, "anchor_careful": 0, "comparator_defect": 0, "comparator_careful": 0}
    worst = {"defect_ratio": 0.0, "defect_share": 0.0, "careful_ratio": 0.0}
    for seed in range(seeds):
        inputs = case.make_inputs(seed=seed, small=small)
        reference = case.anchor.reference(inputs)
        kwargs = case.judge_kwargs(inputs)
        careful = case.careful(inputs)
        counts["anchor_careful"] += int(not case.anchor.passes(careful, reference))
        flagged, ratio, _ = _comparator(careful, kwargs)
        counts["comparator_careful"] += int(flagged)
        worst["careful_ratio"] = max(worst["careful_ratio"], ratio)
        if case.defective is not None:
            defect = case.defective(inputs)
            counts["anchor_defect"] += int(not case.anchor.passes(defect, reference))
            flagged, ratio, share = _comparator(defect, kwargs)
            counts["comparator_defect"] += int(flagged)
            worst["defect_ratio"] = max(worst["defect_ratio"], ratio)
            worst["defect_share"] = max(worst["defect_share"], share)
    return {**counts, **worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--small", action="store_true", help="the CI sizes instead of the threads' shapes")
    args = parser.parse_args()
    start = time.perf_counter()
    print("| regression | threads | anchor: check | anchor flags defect | anchor flags careful twin | "
          "comparator flags defect (worst error/bound; violating share) | comparator flags careful twin (max "
          "error/bound) |")
    print("|---|---|---|---|---|---|---|")
    n = args.seeds
    for name, case in REGRESSIONS.items():
        row = measure(name, n, args.small)
        defect = "—" if case.defective is None else f"{row['anchor_defect']}/{n}"
        found = ("— (no defect)" if case.defective is None else
                 f"{row['comparator_defect']}/{n} ({row['defect_ratio']:.3g}; {100 * row['defect_share']:.2g}%)")
        print(f"| `{name}` | {', '.join(case.threads)} | {case.anchor.suite}: {case.anchor.rule} | {defect} | "
              f"{row['anchor_careful']}/{n} | {found} | {row['comparator_careful']}/{n} "
              f"({row['careful_ratio']:.6g}) |", flush=True)
    print(f"\n{n} seeds per regression, {'CI sizes' if args.small else 'the threads shapes'}, "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
