"""No flakiness: careful kernels judged by `assert_close_to_exact` over many seeds, next to what
the anchors' own tolerances say on the same runs.

Careful kernels: the peer suites' CPU compositions (tests/peer/peer_cases.py; the kernel is the
composition summed in another order than the suite's reference, as a GPU kernel would be) over
the suites' representative shapes, and the careful twins of normtheory.kernels.regressions at
their CI sizes. Prints a Markdown table per group: runs, comparator failures, anchor failures,
and the largest error/bound the comparator saw. A comparator failure on a careful kernel is a bug
in the kernel or in the bound: investigate, never loosen the bound.

    python benchmarks/flakiness.py [--seeds 100] [--groups peer,gallery] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "peer"))

import peer_cases as pc  # noqa: E402

from normtheory.kernels.regressions import REGRESSIONS  # noqa: E402
from normtheory.testing import assert_close_to_exact  # noqa: E402


def _judge(outputs, kwargs) -> tuple[bool, float]:
    try:
        return False, assert_close_to_exact(outputs, **kwargs).max_ratio
    except AssertionError:
        return True, float("inf")


def peer_runs(seeds: int):
    """(group, case id, seed, comparator failed, anchor failed, max error/bound) per run."""
    cases = [c for c in pc.liger_rms_norm_cases() + pc.liger_rms_norm_cases(True) + pc.liger_layer_norm_cases()
             + pc.vllm_layernorm_cases() + pc.flash_layer_norm_cases()
             if not c.full_grid_only and pc.expected_to_fail(c) is None]
    for seed in range(seeds):
        for case in cases:
            inputs = pc.make_inputs(case, seed)
            outputs = pc.careful_outputs(case, inputs, tiled=True)
            failed, ratio = _judge(outputs, pc.judge_kwargs(case, inputs))
            yield case.suite, case.id, seed, failed, not pc.anchor_passes(case, inputs, outputs), ratio


def gallery_runs(seeds: int):
    for seed in range(seeds):
        for name, case in REGRESSIONS.items():
            inputs = case.make_inputs(seed=seed, small=True)
            outputs = case.careful(inputs)
            failed, ratio = _judge(outputs, case.judge_kwargs(inputs))
            anchor_failed = not case.anchor.passes(outputs, case.anchor.reference(inputs))
            yield f"gallery: {name}", "careful twin", seed, failed, anchor_failed, ratio


def summarize(runs) -> dict:
    table: dict[str, dict] = {}
    for group, case_id, seed, failed, anchor_failed, ratio in runs:
        row = table.setdefault(group, {"runs": 0, "cases": set(), "comparator_failures": 0, "anchor_failures": 0,
                                       "max_err_over_bound": 0.0, "failed_runs": []})
        row["runs"] += 1
        row["cases"].add(case_id)
        row["comparator_failures"] += int(failed)
        row["anchor_failures"] += int(anchor_failed)
        row["max_err_over_bound"] = max(row["max_err_over_bound"], ratio)
        if failed:
            row["failed_runs"].append(f"{case_id} seed {seed}")
    for row in table.values():
        row["cases"] = len(row["cases"])
    return table


def print_table(table: dict, seeds: int) -> None:
    print(f"| careful kernels ({seeds} seeds) | cases | runs | comparator failures | anchor failures | "
          "max error/bound |")
    print("|---|---|---|---|---|---|")
    for group, row in table.items():
        print(f"| {group} | {row['cases']} | {row['runs']} | {row['comparator_failures']} | {row['anchor_failures']} | "
              f"{row['max_err_over_bound']:.6g} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--groups", default="peer,gallery")
    parser.add_argument("--json", default=None, help="also write the table here")
    args = parser.parse_args()
    start = time.perf_counter()
    runs = []
    if "gallery" in args.groups:
        runs += list(gallery_runs(args.seeds))
    if "peer" in args.groups:
        runs += list(peer_runs(args.seeds))
    table = summarize(runs)
    print_table(table, args.seeds)
    print(f"\n{len(runs)} runs in {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"seeds": args.seeds, "groups": table}, handle, indent=2)


if __name__ == "__main__":
    main()
