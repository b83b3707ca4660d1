"""How long `assert_close_to_exact` takes to judge a (rows × d) bf16 forward + backward, as a
ratio to computing the same LayerNorm / RMSNorm forward and backward in float64 with numpy on
the same inputs (the cheapest thing a suite could do instead; it derives no bound).

The outputs judged are those of a careful torch kernel (fp32 compute, one rounding), computed
once before timing. Prints, per op, the median of --repeats runs of each, the ratio, and where
the comparator's time goes (parsing the inputs, the correctly rounded reference, the bounds,
the element comparison), from one extra instrumented run.

    python benchmarks/comparator_speed.py [--rows 8192] [--d 4096] [--repeats 3] [--ops rmsnorm,layernorm]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from normtheory.testing import assert_close_to_exact
from normtheory.testing.judge import bound_group, bound_groups, reference
from normtheory.testing.problem import parse_problem

EPS = 1e-5


def numpy_float64(op: str, x, w, b, gy):
    """LayerNorm / RMSNorm forward and backward (y, gx, gw, gb) in float64."""
    centred = x - x.mean(axis=1, keepdims=True) if op == "layernorm" else x
    r = 1.0 / np.sqrt((centred * centred).mean(axis=1, keepdims=True) + EPS)
    n = centred * r
    y = n * w + (b if b is not None else 0.0)
    g = gy * w
    gx = g - n * (g * n).mean(axis=1, keepdims=True)
    if op == "layernorm":
        gx = gx - g.mean(axis=1, keepdims=True)
    return y, gx * r, (gy * n).sum(axis=0), gy.sum(axis=0) if b is not None else None


def careful_outputs(op: str, x, w, b, gy):
    """A careful kernel's bf16 outputs: fp32 torch composition, one rounding."""
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    br = b.clone().requires_grad_() if b is not None else None
    x32 = xr.float()
    centred = x32 - x32.mean(-1, keepdim=True) if op == "layernorm" else x32
    y = centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + EPS) * wr.float()
    if br is not None:
        y = y + br.float()
    y = y.to(x.dtype)
    y.backward(gy)
    out = {"y": y.detach(), "gx": xr.grad, "gw": wr.grad}
    if br is not None:
        out["gb"] = br.grad
    return out


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def phases(op, actual, kwargs) -> dict[str, float]:
    """One instrumented run: where the comparator's time goes."""
    out, start = {}, time.perf_counter()
    problem = parse_problem(actual, op=op, **kwargs)
    out["parse"], start = time.perf_counter() - start, time.perf_counter()
    reference(problem)
    out["reference"], start = time.perf_counter() - start, time.perf_counter()
    for group in bound_groups(problem, [q for q in ("y", "gx", "gw", "gb") if q in actual]):
        bound_group(problem, group, None)  # as the comparator does (its y and gx in row blocks)
    out["bounds"] = time.perf_counter() - start
    return out


def run(op: str, rows: int, d: int, repeats: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, d, generator=gen).bfloat16()
    w = (1 + 0.1 * torch.randn(d, generator=gen)).bfloat16()
    b = torch.randn(d, generator=gen).bfloat16() if op == "layernorm" else None
    gy = torch.randn(rows, d, generator=gen).bfloat16()
    actual = careful_outputs(op, x, w, b, gy)
    arrays = [t.float().numpy().astype(np.float64) if t is not None else None for t in (x, w, b, gy)]
    kwargs = dict(x=x, weight=w, bias=b, residual=None, gy=gy, eps=EPS, affine=None, eps_mode="inside", p=None,
                  contract="default", scale=None, scaling=None, semantics="exact")
    baseline = median_seconds(lambda: numpy_float64(op, *arrays), repeats)
    judged = median_seconds(lambda: assert_close_to_exact(actual, op=op, x=x, weight=w, bias=b, gy=gy, eps=EPS),
                            repeats)
    split = phases(op, actual, kwargs)
    print(f"{op} bf16 {rows}x{d} forward+backward ({', '.join(actual)}): comparator {judged:.2f} s, "
          f"numpy float64 {baseline:.3f} s, ratio {judged / baseline:.0f}x (median of {repeats})")
    print("  comparator phases (one run): " + ", ".join(f"{k} {v:.2f} s" for k, v in split.items())
          + f", comparison and rest {max(judged - sum(split.values()), 0):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ops", default="rmsnorm,layernorm")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"torch threads {torch.get_num_threads()}; numpy {np.__version__}")
    for op in args.ops.split(","):
        run(op, args.rows, args.d, args.repeats)


if __name__ == "__main__":
    main()
