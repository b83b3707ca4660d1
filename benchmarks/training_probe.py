"""Run the trained-model probes (docs/trained_claims.md) at a CPU or a GPU size, in one process,
and write every probe's per-seed records and verdicts into one JSON file.

    PYTHONPATH=. python benchmarks/training_probe.py                      # CPU: the CLI's reference settings
    PYTHONPATH=. python benchmarks/training_probe.py --size gpu --device cuda --out $OUT/training_probes_cuda.json

Re-judge the file anywhere: `normtheory train-probe --from FILE` (every probe in it). The file is
rewritten after each probe, so a run stopped by a timeout keeps the probes that finished.

--size gpu is prepared for a GPU session (benchmarks/gpu_session.sh, step "training") and has
NOT run yet: deeper (L = 24 for the Curse of Depth probe, 12 for the others) and wider (d = 128)
models, 5 seeds, 600 steps of 64 sequences. Its verdicts are not registered; the exit status is
that of the registry comparison all the same, read it with the notes the report prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# cuBLAS needs this before CUDA starts to run its GEMMs deterministically
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

PROBES = ("curse_of_depth", "warmup", "gradient_profile")

# per probe: the settings that differ from the CLI's reference ones
SIZES: dict[str, dict[str, dict[str, int]]] = {
    "cpu": {probe: {} for probe in PROBES},
    "gpu": {
        "curse_of_depth": {"layers": 24, "d": 128, "heads": 4, "steps": 600, "batch": 64, "seeds": 5},
        "warmup": {"layers": 12, "d": 128, "heads": 4, "steps": 600, "batch": 64, "seeds": 5},
        "gradient_profile": {"layers": 12, "d": 128, "heads": 4, "steps": 600, "batch": 64, "seeds": 5},
    },
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", default=",".join(PROBES), help="comma-separated, run in this order")
    parser.add_argument("--size", choices=tuple(SIZES), default="cpu")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="training_probes.json")
    parser.add_argument("--seeds", type=int, help="override the size's seed count (a quick smoke run)")
    parser.add_argument("--steps", type=int, help="override the size's step count (a quick smoke run)")
    args = parser.parse_args(argv)
    args.probes = [p.strip() for p in args.probes.split(",") if p.strip()]
    unknown = set(args.probes) - set(PROBES)
    if unknown:
        parser.error(f"unknown probe(s): {', '.join(sorted(unknown))}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from normtheory.output_files import write_json_file
    from normtheory.theory.training.judge import judge_result
    from normtheory.theory.training.probes import ProbeSettings, default_lr, run_probe, with_overrides

    reports = []
    for probe in args.probes:
        settings = with_overrides(ProbeSettings(probe=probe, lr=default_lr(probe)), device=args.device,
                                  threads=args.threads, **SIZES[args.size][probe])
        settings = with_overrides(settings, seeds=args.seeds, steps=args.steps)
        start = time.perf_counter()
        result = run_probe(settings)
        seconds = time.perf_counter() - start
        judged = judge_result(result)
        runs = settings.seeds * len(result["arms"])
        print(f"{probe}: {runs} runs in {seconds:.1f} s ({1000 * seconds / (runs * settings.steps):.1f} ms per step, "
              f"measurements included)", flush=True)
        for claim in judged["claims"]:
            interval = claim["interval"]
            print(f"  {claim['id']:40s} {claim['verdict']:12s} mean {interval['mean']:+.4g} "
                  f"[{interval['low']:+.4g}, {interval['high']:+.4g}] MDE {interval['mde']:.3g} "
                  f"(registered at the reference size: {claim['expected']})", flush=True)
        reports.append({"probe": probe, "settings": result["settings"], "arms": result["arms"], "seconds": seconds}
                       | judged)
        write_json_file(args.out, {"results": reports})
    return 0 if all(report["all_as_registered"] for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
