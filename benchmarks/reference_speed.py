"""Throughput of `correctly_rounded` as a ratio to plain numpy float64, measured in this one run.

One table: op × format × family (normal, offset 1e4, outlier, tiny, near-constant, constant),
the reference with one thread and with two (--threads), each as elements/s and as a ratio to
numpy float64 LayerNorm/RMSNorm on the same inputs; the fraction of elements the double-word
midpoint tier decided and the fraction that went to arb/exact arithmetic. Timings are
interleaved (numpy, then each thread count, per repeat) and the median of --repeats is taken:
other processes share the cores, so read the ratios, and expect a few tens of percent of noise.

    PYTHONPATH=. python benchmarks/reference_speed.py [--rows 512] [--d 4096] [--repeats 7]
    PYTHONPATH=. python benchmarks/reference_speed.py --device cuda   # CUDA tensors, ratio to torch float64

With --device cuda the inputs are CUDA tensors of the format's dtype and the baseline is torch
float64 LayerNorm/RMSNorm on the same GPU (normtheory.accel runs the float64 pass there).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from normtheory.families import draw_rows
from normtheory.formats import FORMATS
from normtheory.reference import correctly_rounded

FAMILIES = "normal,offset_1e4,outlier,tiny,near_constant,constant"
EPS = {"layernorm": 1e-5, "rmsnorm": 1e-6}


def numpy_float64(op: str, x: np.ndarray, eps: float) -> np.ndarray:
    centred = x - x.mean(axis=1, keepdims=True) if op == "layernorm" else x
    return centred / np.sqrt((centred * centred).mean(axis=1, keepdims=True) + eps)


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_cell(op, fmt_name, x, thread_counts, repeats):
    """({label: median seconds}, stats of the last reference run)."""
    eps = EPS[op]
    runs = {label: [] for label in ["numpy", *thread_counts]}
    stats = {}
    for _ in range(repeats):
        runs["numpy"].append(_seconds(lambda: numpy_float64(op, x, eps)))
        for threads in thread_counts:
            def ours(threads=threads):
                _, stats["last"] = correctly_rounded(op, x, format=fmt_name, eps=eps, affine="none", threads=threads,
                                                     return_stats=True)
            runs[threads].append(_seconds(ours))
    return {label: statistics.median(times) for label, times in runs.items()}, stats["last"]


def cpu_table(args) -> None:
    rng = np.random.default_rng(0)
    thread_counts = [int(t) for t in args.threads.split(",")]
    correctly_rounded("layernorm", np.ones((4, 8)), format="bf16")  # compile (or load) the kernels first
    ratio_heads = " ".join(f"{f'{t} thr el/s':>12} {f'{t} thr ratio':>12}" for t in thread_counts)
    header = f"{'op':10} {'format':6} {'family':14} {'numpy el/s':>11} {ratio_heads} {'midpoint':>9} {'arb':>9}"
    print(f"{args.rows} x {args.d} per cell, median of {args.repeats}; ratio = reference / numpy float64 throughput")
    print(header)
    print("-" * len(header))
    for op in args.ops.split(","):
        for fmt_name in args.formats.split(","):
            for family in args.families.split(","):
                x = draw_rows(family, rng, args.rows, args.d, FORMATS[fmt_name])
                seconds, stats = measure_cell(op, fmt_name, x, thread_counts, args.repeats)
                elements = x.size
                cells = " ".join(f"{elements / seconds[t]:12.3e} {seconds['numpy'] / seconds[t]:12.2f}"
                                 for t in thread_counts)
                print(f"{op:10} {fmt_name:6} {family:14} {elements / seconds['numpy']:11.3e} {cells} "
                      f"{stats['y_midpoint_tier'] / elements:9.2e} {stats['y'] / elements:9.2e}", flush=True)


def cuda_table(args) -> None:
    import torch
    import torch.nn.functional as F

    import normtheory.accel.reference_device  # noqa: F401  (registers the device pass)

    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    rng = np.random.default_rng(0)
    correctly_rounded("layernorm", np.ones((4, 8)), format="bf16")  # compile (or load) the CPU tiers first

    def baseline(op, x64, eps):
        if op == "layernorm":
            return F.layer_norm(x64, (x64.shape[-1],), eps=eps)
        return x64 * torch.rsqrt((x64 * x64).mean(dim=-1, keepdim=True) + eps)

    def timed(fn):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - start

    print(f"{args.rows} x {args.d} per cell on {torch.cuda.get_device_name()}, median of {args.repeats}; "
          "ratio = reference on CUDA tensors / torch float64 on the same GPU (input already float64 there)")
    print(f"{'op':10} {'format':6} {'family':14} {'torch f64 el/s':>15} {'ours el/s':>11} {'ratio':>7} {'host rows':>9}")
    for op in args.ops.split(","):
        for fmt_name in args.formats.split(","):
            for family in args.families.split(","):
                x = torch.tensor(draw_rows(family, rng, args.rows, args.d, FORMATS[fmt_name])).to(dtypes[fmt_name]).cuda()
                x64 = x.double()
                eps = EPS[op]
                correctly_rounded(op, x[:2], format=fmt_name, eps=eps, affine="none")
                base, ours, stats = [], [], {}
                for _ in range(args.repeats):
                    base.append(timed(lambda: baseline(op, x64, eps)))  # noqa: B023
                    ours.append(timed(lambda: stats.update(last=correctly_rounded(  # noqa: B023
                        op, x, format=fmt_name, eps=eps, affine="none", return_stats=True)[1])))  # noqa: B023
                b, o = statistics.median(base), statistics.median(ours)
                print(f"{op:10} {fmt_name:6} {family:14} {x.numel() / b:15.3e} {x.numel() / o:11.3e} {b / o:7.3f} "
                      f"{stats['last'].get('host_rows', '-'):>9}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=7)  # cells take ~5 ms: medians of 3 moved ±40 % between runs
    parser.add_argument("--threads", default="1,2", help="thread counts to time (comma-separated)")
    parser.add_argument("--ops", default="layernorm,rmsnorm")
    parser.add_argument("--formats", default="bf16,fp16,fp32")
    parser.add_argument("--families", default=FAMILIES)
    parser.add_argument("--device", default="cpu", help="cpu (numpy arrays) | cuda (CUDA tensors)")
    args = parser.parse_args()
    (cuda_table if args.device == "cuda" else cpu_table)(args)


if __name__ == "__main__":
    main()
