"""Record the mean-field sweep: one JSON per (setup, d) with every arch on common weights.

    PYTHONPATH=. python benchmarks/meanfield_sweep.py --device cuda --out tests/data/meanfield

Prints the wall time of each record (weights drawn, forward, one backward per depth). The
records are judged anywhere with `normtheory meanfield --from RECORD.json ...`; each stores
its protocol (tokens, readout, loss, qk gain) and constants (eps, d_ff, heads). The deep grid
of issue 17 (L up to 384) is a step of benchmarks/gpu_session.sh (`STEPS=meanfield`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def round_floats(value, digits: int = 6):
    """Six significant digits: far below the Monte Carlo error, and a third of the bytes."""
    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [round_floats(v, digits) for v in value]
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    return value


def compact_record(record: dict, digits: int = 5) -> dict:
    """What the judge and the plot read, for committing as test data: every weight's per-layer
    gradient at the deepest depth, W2's and the residual stream's at the others."""
    deepest = str(max(record["config"]["depths"]))
    out = dict(record, measurements={})
    for arch, m in record["measurements"].items():
        kept = {k: v for k, v in m.items() if k not in ("grad_sq", "hidden_centered_ms")}
        kept["grad_sq"] = {L: (g if L == deepest else {k: g[k] for k in ("w2", "hidden")})
                           for L, g in m["grad_sq"].items()}
        out["measurements"][arch] = kept
    return round_floats(out, digits)


def setup_ok(arch: str, setups: str) -> bool:
    """Softmax-only archs (nGPT, QK-Norm) are left out of a sweep that includes the proof setup."""
    return not ("xiong" in setups.split(",") and arch in ("ngpt", "qk_norm"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--d", default="512,1024")
    parser.add_argument("--L", default="6,12,24,48,96")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--setups", default="xiong,standard")
    parser.add_argument("--archs", default="post_ln,pre_ln,peri_ln,lns,pre_rms")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--readout", default="token", choices=("token", "shared"))
    parser.add_argument("--loss", default="linear", choices=("linear", "xent"))
    parser.add_argument("--qk-gain", type=float, default=1.0)
    parser.add_argument("--suffix", default="", help="appended to each file name (protocol variants)")
    parser.add_argument("--memory-gb", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--compact", action="store_true", help="write only what the judge and plot read")
    args = parser.parse_args(argv)

    import torch
    from tqdm import tqdm

    from normtheory.theory.meanfield.montecarlo import StackConfig, run_record

    if args.threads:
        torch.set_num_threads(args.threads)  # on a shared machine, spinning threads cost more than they give
    args.out.mkdir(parents=True, exist_ok=True)
    archs = [a for a in args.archs.split(",") if setup_ok(a, args.setups)]
    depths = tuple(int(x) for x in args.L.split(","))
    jobs = [(s, int(d)) for s in args.setups.split(",") for d in args.d.split(",")]
    bar = tqdm(total=len(jobs) * len(archs) * args.seeds, file=sys.stderr, desc="meanfield sweep")
    summary = {}
    total = time.perf_counter()
    for setup, d in jobs:
        cfg = StackConfig(setup=setup, d=d, depths=depths, n_tokens=args.tokens, readout=args.readout, loss=args.loss,
                          qk_gain=args.qk_gain)

        def progress(message, _bar=bar):
            _bar.set_postfix_str(message)

        def tick(message, _bar=bar):
            progress(message)
            # one tick per (arch, seed) in the chunk
            start, end = message.rsplit(" seeds ", 1)[1].split("..")
            _bar.update(int(end) - int(start) + 1)

        record = run_record(archs, cfg, list(range(args.seeds)), args.device, args.memory_gb * 1e9, tick)
        name = f"{setup}_d{d}{args.suffix}.json"
        written = compact_record(record) if args.compact else round_floats(record)
        (args.out / name).write_text(json.dumps(written, separators=(",", ":")))
        summary[name] = record["elapsed_s"]
        print(f"{name}: {record['elapsed_s']:.1f} s ({', '.join(archs)}; {args.seeds} seeds; L {depths})",
              file=sys.stderr)
    bar.close()
    summary["total_s"] = time.perf_counter() - total
    (args.out / "timing.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
