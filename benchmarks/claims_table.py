"""The claims table of docs/claims.md: every registered claim judged on the committed H100
recordings and on a small CPU run of every architecture (the same run notebook 03 makes).

    PYTHONPATH=. python benchmarks/claims_table.py > /tmp/claims_tables.md

Prints two Markdown tables (source -> statement -> judged how -> expected -> verdict -> MDE)
and the seconds each took.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALL_ARCHS_STANDARD = ["pre_ln", "pre_rms", "qk_norm", "mix_ln", "hybrid_norm", "normformer", "ngpt", "peri_ln", "post_ln"]


def main() -> int:
    import torch

    from normtheory.theory.claims import core, registry
    from normtheory.theory.claims.evidence import Evidence
    from normtheory.theory.claims.report import markdown_table
    from normtheory.theory.meanfield.montecarlo import StackConfig, run_record

    torch.set_num_threads(1)
    start = time.perf_counter()
    h100 = [json.loads(p.read_text()) for p in sorted((ROOT / "tests" / "data" / "meanfield").glob("*_d*.json"))]
    results = [r for r in core.judge_all(registry.all_claims(), Evidence.from_records(h100)) if r.tests]
    print(f"### H100 sweep (tests/data/meanfield; judged in {time.perf_counter() - start:.1f} s)\n")
    print(markdown_table(results))
    start = time.perf_counter()
    cpu = [run_record(["post_ln", "pre_ln", "peri_ln", "lns", "pre_rms"], StackConfig("xiong", 128, (4, 8, 16)),
                      list(range(16))),
           run_record(ALL_ARCHS_STANDARD, StackConfig("standard", 128, (4, 8, 16), qk_gain=4.0), list(range(16)))]
    results = [r for r in core.judge_all(registry.all_claims(), Evidence.from_records(cpu)) if r.tests]
    print(f"\n### CPU run (d 128, L 4, 8, 16, 16 seeds; standard setup with qk_gain 4; "
          f"{time.perf_counter() - start:.1f} s)\n")
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
