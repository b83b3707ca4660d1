"""`normtheory fp8`: what this torch's fp8 casts do, and accumulator bits from a recording.

    normtheory fp8 probe [--device cpu|cuda] [--json OUT.json]
        per fp8 format: overflow of finite values and of ±inf (saturate | inf | nan), the NaN
        bytes torch writes, the byte of −0.0 (kernels/fp8_probe.py)
    normtheory fp8 accumulation REC.npz [--json OUT.json]
        effective accumulator bits per case and K of a recording made by
        benchmarks/accumulation_probe.py (precision/lowprecision/accumulation.py)

Exit 0 on success, 2 on bad input (unknown action, missing or corrupt recording, no CUDA).
torch is imported only inside run() for the probe.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from normtheory.errors import UsageError

ACTIONS = ("probe", "accumulation")


def configure(parser) -> None:
    parser.add_argument("action", help="probe | accumulation")
    parser.add_argument("recording", nargs="?", default=None, help="accumulation: the recording (.npz)")
    parser.add_argument("--device", default="cpu", help="probe: cpu | cuda (default cpu)")
    parser.add_argument("--json", default=None, metavar="OUT.json", help="also write the results as JSON")


def _probe(args) -> list[dict]:
    if args.device not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda, got {args.device!r}")
    import torch

    from normtheory.kernels.fp8_probe import probe_all

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    rows = [asdict(b) for b in probe_all(args.device).values()]
    for row in rows:
        nan = "/".join(f"0x{code:02X}" for code in row["nan_bytes"])
        print(f"{row['format']:14} {row['device']:5} overflow={row['finite_overflow']:8} inf={row['inf_input']:8} "
              f"NaN bytes (+/-)={nan} -0.0 byte=0x{row['negative_zero_byte']:02X}  torch {row['torch_version']}")
    return rows


def _accumulation(args) -> list[dict]:
    from normtheory.precision.lowprecision.accumulation import analyse

    if not args.recording:
        raise UsageError("fp8 accumulation needs a recording: normtheory fp8 accumulation REC.npz")
    rows = [asdict(e) for e in analyse(args.recording)]
    for row in rows:
        bound = "≥ " if row["at_least"] else "≤ " if row["at_most"] else ""
        print(f"{row['label']:30} K={row['k']:6d} {row['model']:8} bits {bound}{row['bits']:.2f}  "
              f"mean rel err {row['mean_rel_err']:.3e}")
    return rows


def run(args) -> int:
    if args.action not in ACTIONS:
        raise UsageError(f"unknown fp8 action {args.action!r}; known: {', '.join(ACTIONS)}")
    rows = _probe(args) if args.action == "probe" else _accumulation(args)
    if args.json:
        try:
            with open(args.json, "w") as handle:
                json.dump({"schema": "normtheory.fp8/1", "action": args.action, "results": rows}, handle, indent=1)
        except OSError as exc:
            raise UsageError(f"--json: cannot write {args.json!r} ({exc.strerror})") from None
    return 0
