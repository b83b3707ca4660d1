"""How long a default certification takes, and how it scales with d and with worker processes.

    PYTHONPATH=. python benchmarks/certify_speed.py [--d 1024,4096,16384,65536] [--workers 1,2] [--repeats 1]
        [--kernels torch.layer_norm:layernorm,torch.rms_norm:rmsnorm] [--format bf16] [--baseline DIR]

Per kernel and d: the median wall time at the default budget with each worker count
(NORMTHEORY_WORKERS, certify.engine), the ratio of each to the first worker count measured in
this run, the ratio to the 60 s target, the cost per row per element (wall / (rows · d)), and
the share of the wall spent in the kernel. Compile time of compiled kernels is excluded, as the
certificate reports it. Machines are shared: read medians and ratios, not single timings.

`--baseline DIR` (another checkout of normtheory, e.g. `git worktree add /tmp/base <commit>` or
`git archive <commit> | tar -x -C /tmp/base`): every repeat times the baseline and this tree one
after the other, each in a fresh process (the same inputs: the same seed and budget), and the
table gives both medians, their spread over the repeats (min–max: the machine's noise) and the
ratio this/baseline of the medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_SECONDS = 60.0
ROOT = Path(__file__).resolve().parents[1]


def _run(kernel: str, op: str, fmt: str, d: int, workers: int) -> tuple[float, float, int]:
    from normtheory.certify.api import certify_kernel, prepare

    config = dataclasses.replace(prepare(kernel, op=op, format=fmt, d=d), workers=workers)
    start = time.perf_counter()
    cert, _ = certify_kernel(config, op=op)
    wall = time.perf_counter() - start - (cert["timing"]["compile_seconds"] or 0.0)
    return wall, cert["timing"]["kernel_seconds_excluding_compile"] / wall, cert["inputs_tested"]


def _warm_up(args: argparse.Namespace) -> None:
    """Compile (or load) the reference's kernels and start the worker pools outside the timings."""
    from normtheory.certify.api import certify_kernel, prepare

    for workers in (int(w) for w in args.workers.split(",")):
        config = dataclasses.replace(prepare("torch.rms_norm", op="rmsnorm", format=args.format, d=4096, budget=300),
                                     workers=workers)
        certify_kernel(config, op="rmsnorm")


def _cases(args: argparse.Namespace):
    for pair in args.kernels.split(","):
        kernel, op = pair.split(":")
        for d in (int(v) for v in args.d.split(",")):
            for workers in (int(w) for w in args.workers.split(",")):
                yield kernel, op, d, workers


def _in_process(args: argparse.Namespace) -> None:
    _warm_up(args)
    print(f"{'kernel':18} {'d':>6} {'workers':>7} {'rows':>5} {'median s':>9} {'vs first':>8} "
          f"{'vs 60 s':>7} {'ns/row/el':>10} {'kernel share':>12}")
    first: dict = {}
    for kernel, op, d, workers in _cases(args):
        runs = [_run(kernel, op, args.format, d, workers) for _ in range(args.repeats)]
        wall = statistics.median(r[0] for r in runs)
        first.setdefault((kernel, d), wall)
        rows = runs[0][2]
        print(f"{kernel:18} {d:6d} {workers:7d} {rows:5d} {wall:9.1f} {wall / first[(kernel, d)]:8.2f} "
              f"{wall / TARGET_SECONDS:7.2f} {wall / (rows * d) * 1e9:10.0f} "
              f"{statistics.median(r[1] for r in runs):12.2f}", flush=True)


def _child(args: argparse.Namespace) -> None:
    """One timing of every case in this process (the tree on PYTHONPATH), as JSON lines."""
    import normtheory

    _warm_up(args)
    print(json.dumps({"normtheory": normtheory.__file__}), flush=True)
    for kernel, op, d, workers in _cases(args):
        wall, share, rows = _run(kernel, op, args.format, d, workers)
        print(json.dumps({"case": [kernel, d, workers], "wall": wall, "share": share, "rows": rows}), flush=True)


def _timed_tree(tree: Path, args: argparse.Namespace) -> dict:
    """{(kernel, d, workers): (wall, rows)} of one child process on `tree`."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--d", args.d, "--workers", args.workers,
               "--kernels", args.kernels, "--format", args.format]
    env = dict(os.environ, PYTHONPATH=str(tree))
    lines = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True, check=True).stdout.splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    loaded = Path(records[0]["normtheory"]).resolve()
    if tree.resolve() not in loaded.parents:
        raise SystemExit(f"the child for {tree} imported normtheory from {loaded}")
    return {tuple(r["case"]): (r["wall"], r["rows"]) for r in records[1:]}


def _against_baseline(args: argparse.Namespace) -> None:
    baseline = Path(args.baseline)
    timings: dict = {"baseline": {}, "this": {}}
    for _ in range(args.repeats):  # alternate, so that both trees see the same machine load
        for name, tree in (("baseline", baseline), ("this", ROOT)):
            for case, value in _timed_tree(tree, args).items():
                timings[name].setdefault(case, []).append(value)
    print(f"{'kernel':18} {'d':>6} {'workers':>7} {'rows':>5} {'baseline s':>10} {'(min-max)':>13} "
          f"{'this s':>8} {'(min-max)':>13} {'this/base':>9} {'vs 60 s':>7} {'ns/row/el':>10}")
    for case in _cases(args):
        kernel, _, d, workers = case
        key = (kernel, d, workers)
        base = [wall for wall, _ in timings["baseline"][key]]
        this = [wall for wall, _ in timings["this"][key]]
        rows = timings["this"][key][0][1]
        b, t = statistics.median(base), statistics.median(this)
        print(f"{kernel:18} {d:6d} {workers:7d} {rows:5d} {b:10.1f} {min(base):6.1f}-{max(base):<6.1f} "
              f"{t:8.1f} {min(this):6.1f}-{max(this):<6.1f} {t / b:9.3f} {t / TARGET_SECONDS:7.2f} "
              f"{t / (rows * d) * 1e9:10.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", default="1024,4096,16384,65536")
    parser.add_argument("--workers", default="1,2", help="worker counts to time; ratios are to the first")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--format", default="bf16")
    parser.add_argument("--kernels", default="torch.layer_norm:layernorm,torch.rms_norm:rmsnorm",
                        help="KERNEL:OP pairs, comma-separated")
    parser.add_argument("--baseline", help="another normtheory checkout to time against, alternately")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
    elif args.baseline:
        _against_baseline(args)
    else:
        _in_process(args)


if __name__ == "__main__":
    main()
