"""Verdicts for the norm → fp8 torch compositions (kernels/fp8_output.py) on the structured
input families, per op, output format and scaling recipe, judged by
precision.scaled_check.judge_scaled_output (bound + recipe scale check). fp32 inputs.

Delayed scaling runs the families as consecutive steps of one training run (history length
4, so each step's scale comes from the earlier families' amaxes); the others are stateless.

    PYTHONPATH=. python benchmarks/fp8_output_verdicts.py [--d 256] [--rows 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from normtheory.families import FAMILIES, draw_rows
from normtheory.formats import FORMATS
from normtheory.kernels.fp8_output import layer_norm_fp8, rms_norm_fp8
from normtheory.kernels.fp8_probe import probe_cast
from normtheory.precision.lowprecision.scaled_check import judge_scaled_output
from normtheory.precision.measure import as_float64, exact_outputs

EPS = 1e-5
KERNELS = {"rmsnorm": (rms_norm_fp8, "weight"), "layernorm": (layer_norm_fp8, "weight_bias")}
TORCH = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
SCALINGS = ("tensor", "row", "block:32", "mx", "delayed")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fp32 = FORMATS["fp32"]
    rng = np.random.default_rng(args.seed)
    w = fp32.round_to_float64(rng.uniform(0.5, 2.0, args.d))
    b = fp32.round_to_float64(rng.uniform(-0.5, 0.5, args.d))
    data = {family: draw_rows(family, rng, args.rows, args.d, fp32) for family in FAMILIES}
    start = time.perf_counter()
    exact = {(op, family): as_float64(exact_outputs(op, x, w, b if affine == "weight_bias" else None, eps=EPS,
                                                    affine=affine)["y"])
             for op, (_, affine) in KERNELS.items() for family, x in data.items()}
    print(f"exact outputs: {time.perf_counter() - start:.1f} s")
    print("| op | out | scaling | verdict | max err/bound | worst family | non-finite | unbounded | bad scales |")
    print("|---|---|---|---|---|---|---|---|---|")
    failures = 0
    for op, (kernel, affine) in KERNELS.items():
        bias = b if affine == "weight_bias" else None
        for name, dtype in TORCH.items():
            saturate = probe_cast(name).saturates
            for scaling in SCALINGS:
                history = torch.zeros(4) if scaling == "delayed" else None
                worst, worst_family, nonfinite, unbounded, bad = 0.0, "-", 0, 0, 0
                for family, x in data.items():
                    t = lambda a: None if a is None else torch.from_numpy(a.astype(np.float32))  # noqa: E731
                    extra = {"amax_history": history} if history is not None else {}
                    q, scale = kernel(t(x), t(w), t(bias), EPS, scaling=scaling, out_dtype=dtype, **extra)
                    v = judge_scaled_output(op, x, w, bias, q.double().numpy(), scale.double().numpy(),
                                            format="fp32", eps=EPS, affine=affine, out_format=name,
                                            scaling=scaling, exact=exact[(op, family)], saturate=saturate)
                    nonfinite += v.nonfinite
                    unbounded += v.unbounded
                    bad += v.bad_scales
                    if v.max_err_over_bound >= worst:
                        worst, worst_family = v.max_err_over_bound, family
                verdict = "pass" if worst <= 1 and nonfinite == 0 and bad == 0 else "FAIL"
                failures += verdict == "FAIL"
                print(f"| {op} | {name} | {scaling} | {verdict} | {worst:.3f} | {worst_family} | {nonfinite} | "
                      f"{unbounded} | {bad} |")
    print(f"total {time.perf_counter() - start:.1f} s; {failures} failing configurations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
