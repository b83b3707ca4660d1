"""How long a default certification takes, and how it scales with d and with worker processes.

    PYTHONPATH=. python benchmarks/certify_speed.py [--d 1024,4096,16384,65536] [--workers 1,2] [--repeats 1]
        [--kernels torch.layer_norm:layernorm,torch.rms_norm:rmsnorm] [--format bf16]

Per kernel and d: the median wall time at the default budget with each worker count
(NORMTHEORY_WORKERS, certify.engine), the ratio of each to the first worker count measured in
this run, the ratio to the 60 s target, the cost per row per element (wall / (rows · d)), and
the share of the wall spent in the kernel. Compile time of compiled kernels is excluded, as the
certificate reports it. Machines are shared: read medians and ratios, not single timings.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

TARGET_SECONDS = 60.0


def _run(kernel: str, op: str, fmt: str, d: int, workers: int) -> tuple[float, float, int]:
    from normtheory.certify.api import certify_kernel, prepare

    config = dataclasses.replace(prepare(kernel, op=op, format=fmt, d=d), workers=workers)
    start = time.perf_counter()
    cert, _ = certify_kernel(config, op=op)
    wall = time.perf_counter() - start - (cert["timing"]["compile_seconds"] or 0.0)
    return wall, cert["timing"]["kernel_seconds_excluding_compile"] / wall, cert["inputs_tested"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", default="1024,4096,16384,65536")
    parser.add_argument("--workers", default="1,2", help="worker counts to time; ratios are to the first")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--format", default="bf16")
    parser.add_argument("--kernels", default="torch.layer_norm:layernorm,torch.rms_norm:rmsnorm",
                        help="KERNEL:OP pairs, comma-separated")
    args = parser.parse_args()
    from normtheory.certify.api import certify_kernel, prepare

    # compile (or load) the reference's kernels and start the worker pools outside the timings
    for workers in (int(w) for w in args.workers.split(",")):
        config = dataclasses.replace(prepare("torch.rms_norm", op="rmsnorm", format=args.format, d=4096, budget=300),
                                     workers=workers)
        certify_kernel(config, op="rmsnorm")
    worker_counts = [int(w) for w in args.workers.split(",")]
    print(f"{'kernel':18} {'d':>6} {'workers':>7} {'rows':>5} {'median s':>9} {'vs first':>8} "
          f"{'vs 60 s':>7} {'ns/row/el':>10} {'kernel share':>12}")
    for pair in args.kernels.split(","):
        kernel, op = pair.split(":")
        for d in (int(v) for v in args.d.split(",")):
            first = None
            for workers in worker_counts:
                runs = [_run(kernel, op, args.format, d, workers) for _ in range(args.repeats)]
                wall = statistics.median(r[0] for r in runs)
                first = first or wall
                rows = runs[0][2]
                print(f"{kernel:18} {d:6d} {workers:7d} {rows:5d} {wall:9.1f} {wall / first:8.2f} "
                      f"{wall / TARGET_SECONDS:7.2f} {wall / (rows * d) * 1e9:10.0f} "
                      f"{statistics.median(r[1] for r in runs):12.2f}", flush=True)


if __name__ == "__main__":
    main()
