"""Accumulation probe: how many bits do fp8 (torch._scaled_mm) and bf16/fp16 matrix products
keep while they accumulate? Records the products, then estimates the effective accumulator
precision per K with normtheory.precision.lowprecision.accumulation (which documents the estimator).

Inputs expose truncation: positive A (M×K) and B (K×N) with significands in [1, 2) and spread
exponents (accumulation.probe_inputs), so every product is positive and has bits far below the
running sum's last place; K from 128 to 16384. Products of these values and their K-term sums
are exact in binary64, so the exact outputs are known.

Cases (each skipped with a note where this torch/device cannot run it):
  scaled_mm_e4m3fn            torch._scaled_mm, unit scales, fp32 output
  scaled_mm_e4m3fn_fast_accum the same with use_fast_accum=True
  mm_bf16_out_fp32            torch.mm(bf16, bf16, out_dtype=fp32)  (CUDA only)
  mm_fp16_out_fp32            torch.mm(fp16, fp16, out_dtype=fp32)  (CUDA only)
  mm_bf16                     torch.mm(bf16, bf16) -> bf16 output (hides bits beyond ~8: the
                              analysis then reports a lower bound)

    python benchmarks/accumulation_probe.py --device cuda --out accumulation_cuda.npz
    python benchmarks/accumulation_probe.py --analyse accumulation_cuda.npz

On CPU the script runs too (a dry run of the pipeline; CPU kernels are not what is being
measured). An H200 recording (K <= 4096) is tests/data/accumulation_cuda.npz; its table is in
docs/cuda.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np

from normtheory.formats import FORMATS
from normtheory.precision.lowprecision.accumulation import analyse, probe_inputs, save_recording

K_VALUES = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def environment(torch, device: str) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": device}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(name=props.name, capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                   allow_bf16_reduced_precision_reduction=torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
                   allow_fp16_reduced_precision_reduction=torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
                   allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return env


def run_case(torch, label: str, a: np.ndarray, b: np.ndarray, device: str):
    """Returns (measured float64 outputs, out_format) or None where the case cannot run."""
    if label.startswith("scaled_mm"):
        a8 = torch.from_numpy(a.astype(np.float32)).to(device).to(torch.float8_e4m3fn)
        # cuBLASLt takes row-major A times column-major B: B^T must be C-contiguous before .t()
        # (b.T.astype keeps b.T's Fortran order, which made B row-major and the call fail)
        b8 = torch.from_numpy(np.ascontiguousarray(b.T, dtype=np.float32)).to(device).to(torch.float8_e4m3fn).t()
        one = torch.ones((), dtype=torch.float32, device=device)
        kwargs = {"use_fast_accum": True} if label.endswith("fast_accum") else {}
        out = torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.float32, **kwargs)
        return out.double().cpu().numpy(), "fp32"
    dtype = torch.float16 if "fp16" in label else torch.bfloat16
    ta = torch.from_numpy(a.astype(np.float32)).to(device).to(dtype)
    tb = torch.from_numpy(b.astype(np.float32)).to(device).to(dtype)
    if label.endswith("out_fp32"):
        out = torch.mm(ta, tb, out_dtype=torch.float32)
        return out.double().cpu().numpy(), "fp32"
    return torch.mm(ta, tb).double().cpu().numpy(), "bf16"


CASES = {  # label -> input format
    "scaled_mm_e4m3fn": "fp8_e4m3fn",
    "scaled_mm_e4m3fn_fast_accum": "fp8_e4m3fn",
    "mm_bf16_out_fp32": "bf16",
    "mm_fp16_out_fp32": "fp16",
    "mm_bf16": "bf16",
}


def record(args) -> int:
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    cases, notes = {}, []
    for label, in_format in CASES.items():
        for k in args.k:
            a, b = probe_inputs(k, in_format, np.random.default_rng(args.seed + k), m=args.m, n=args.n)
            assert FORMATS[in_format].is_representable(a).all() and FORMATS[in_format].is_representable(b).all()
            try:
                measured, out_format = run_case(torch, label, a, b, args.device)
            except (RuntimeError, NotImplementedError, TypeError) as exc:
                notes.append(f"{label}: not run on {args.device} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
                break
            cases[f"{label}/K{k}"] = {"a": a, "b": b, "c": measured, "label": label, "k": k,
                                      "in_format": in_format, "out_format": out_format}
    env = environment(torch, args.device)
    env["notes"] = notes
    env["command"] = " ".join(sys.argv)
    save_recording(args.out, cases, env)
    print(f"wrote {args.out}: {len(cases)} cases")
    for note in notes:
        print("note:", note)
    return 0


def report(path: str) -> int:
    start = time.perf_counter()
    print("| case | K | model | effective bits | mean rel. err | rms rel. err |")
    print("|---|---|---|---|---|---|")
    for est in analyse(path):
        bits = f"{'≥ ' if est.at_least else '≤ ' if est.at_most else ''}{est.bits:.2f}"
        print(f"| {est.label} | {est.k} | {est.model} | {bits} | {est.mean_rel_err:.3e} | {est.rms_rel_err:.3e} |")
    print(f"(analysis {time.perf_counter() - start:.1f} s)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default="accumulation_probe.npz")
    parser.add_argument("--k", type=int, nargs="+", default=list(K_VALUES))
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--analyse", default=None, help="analyse an existing recording instead of recording")
    args = parser.parse_args(argv)
    if args.analyse:
        return report(args.analyse)
    code = record(args)
    return code or report(args.out)


if __name__ == "__main__":
    sys.exit(main())
