"""Throughput of `correctly_rounded` against plain numpy float64 and a naive mpmath reference.

Rows of d = 4096 (4096 rows by default), LayerNorm and RMSNorm, outputs in bf16, fp16 and
fp32, input families normal, offset (|mean|/std = 1e4), outlier and tiny. Prints, per case,
elements/s of each implementation measured in this one run (median of --repeats), the ratios,
and the fraction of elements that escalated to the slow path.

    python benchmarks/reference_speed.py [--rows 4096] [--d 4096] [--repeats 3] [--mp-sample 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import mpmath
import numpy as np

from normtheory.families import draw_rows
from normtheory.formats import FORMATS
from normtheory.reference import correctly_rounded


def numpy_float64(op: str, x: np.ndarray, eps: float) -> np.ndarray:
    if op == "layernorm":
        centred = x - x.mean(axis=1, keepdims=True)
        return centred / np.sqrt((centred * centred).mean(axis=1, keepdims=True) + eps)
    return x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps)


def naive_mpmath(op: str, x: np.ndarray, eps: float, fmt, sample: int) -> float:
    """Seconds per element of a per-element mpmath evaluation at 200 bits, then rounding."""
    row = x[0]
    start = time.perf_counter()
    with mpmath.workprec(200):
        values = [mpmath.mpf(float(v)) for v in row]
        mean = mpmath.fsum(values) / len(values) if op == "layernorm" else 0
        centred = [v - mean for v in values]
        scale = 1 / mpmath.sqrt(mpmath.fsum(c * c for c in centred) / len(values) + mpmath.mpf(eps))
        outputs = [centred[j] * scale for j in range(sample)]
        fmt.round(np.array(outputs, dtype=object))
    return (time.perf_counter() - start) / sample


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mp-sample", type=int, default=64, help="elements timed for the naive mpmath reference")
    parser.add_argument("--ops", default="layernorm,rmsnorm")
    parser.add_argument("--formats", default="bf16,fp16,fp32")
    parser.add_argument("--families", default="normal,offset_1e4,outlier,tiny")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    correctly_rounded("layernorm", np.ones((1, 8)), format="bf16")  # compile the numba kernels first
    header = (f"{'op':10} {'format':6} {'family':11} {'ours el/s':>11} {'numpy el/s':>11} {'mp el/s':>9} "
              f"{'ours/numpy':>10} {'ours/mp':>9} {'escalated':>10}")
    print(header)
    print("-" * len(header))
    for op in args.ops.split(","):
        eps = 1e-5 if op == "layernorm" else 1e-6
        for fmt_name in args.formats.split(","):
            fmt = FORMATS[fmt_name]
            for family in args.families.split(","):
                x = draw_rows(family, rng, args.rows, args.d, fmt)
                elements = x.size
                stats_holder = {}

                def ours():
                    _, stats_holder["stats"] = correctly_rounded(op, x, format=fmt_name, eps=eps, affine="none",  # noqa: B023 (called at once)
                                                                 return_stats=True)

                ours_s = median_seconds(ours, args.repeats)
                numpy_s = median_seconds(lambda: numpy_float64(op, x, eps), args.repeats)  # noqa: B023
                mp_per_element = naive_mpmath(op, x, eps, fmt, args.mp_sample)
                escalated = stats_holder["stats"]["y"] / elements
                print(f"{op:10} {fmt_name:6} {family:11} {elements / ours_s:11.3e} {elements / numpy_s:11.3e} "
                      f"{1 / mp_per_element:9.3e} {numpy_s / ours_s:10.3f} "
                      f"{(elements / ours_s) * mp_per_element:9.0f} {escalated:10.2e}")


if __name__ == "__main__":
    main()
