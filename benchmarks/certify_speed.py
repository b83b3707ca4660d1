"""How long a default certification takes (issue 5: d = 4096 in under 60 s on 2 CPU cores).

    PYTHONPATH=. python benchmarks/certify_speed.py [--d 4096] [--repeats 3]

Prints, per kernel, the median wall time of `certify` at the default budget (compile time of
compiled kernels excluded, as the certificate reports it), the share spent in the kernel, and
the ratio to the 60 s target. Machines are shared: read the median and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

TARGET_SECONDS = 60.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--format", default="bf16")
    args = parser.parse_args()
    from normtheory.certify.api import certify_kernel, prepare

    # warm the compiled reference kernels (numba) once, outside the timings
    certify_kernel(prepare("torch.rms_norm", op="rmsnorm", format=args.format, d=64, budget=32), op="rmsnorm")
    print(f"{'kernel':18} {'d':>5} {'rows':>5} {'median s':>9} {'kernel share':>12} {'ratio to 60 s':>14}")
    for kernel, op in (("torch.rms_norm", "rmsnorm"), ("torch.layer_norm", "layernorm"), ("hf.llama_rms_norm", "rmsnorm")):
        walls, shares, rows = [], [], 0
        for _ in range(args.repeats):
            config = prepare(kernel, op=op, format=args.format, d=args.d)
            start = time.perf_counter()
            cert, _ = certify_kernel(config, op=op)
            wall = time.perf_counter() - start - (cert["timing"]["compile_seconds"] or 0.0)
            walls.append(wall)
            shares.append(cert["timing"]["kernel_seconds_excluding_compile"] / wall)
            rows = cert["inputs_tested"]
        median = statistics.median(walls)
        print(f"{kernel:18} {args.d:5d} {rows:5d} {median:9.1f} {statistics.median(shares):12.2f} "
              f"{median / TARGET_SECONDS:14.2f}")


if __name__ == "__main__":
    main()
