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

import argparse
import json
import zipfile
from dataclasses import asdict

import numpy as np

from normtheory.errors import UsageError
from normtheory.output_files import check_writable, write_json_file

ACTIONS = ("probe", "accumulation")
KERNEL_RECORDING = "normtheory.recording/1"  # certify/recording.py's SCHEMA (not imported: it pulls torch)


def configure(parser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("exit codes: 0 done, 2 usage error (one line on stderr)\n\nexamples:\n"
                     "  normtheory fp8 probe --device cuda --json casts.json\n"
                     "  python benchmarks/accumulation_probe.py --device cuda --out acc.npz   # on the GPU host\n"
                     "  normtheory fp8 accumulation acc.npz")
    parser.add_argument("action", help="probe | accumulation")
    parser.add_argument("recording", nargs="?", default=None, help="accumulation: the recording (.npz)")
    parser.add_argument("--device", default="cpu", help="probe: cpu | cuda (default cpu)")
    parser.add_argument("--json", default=None, metavar="OUT.json", help="also write the results as JSON")


def _probe(args) -> list[dict]:
    if args.device not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda, got {args.device!r}")
    import torch  # heavy: only for the probe

    from normtheory.kernels.fp8_probe import probe_all  # imports torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    rows = [asdict(b) for b in probe_all(args.device).values()]
    for row in rows:
        nan = "/".join(f"0x{code:02X}" for code in row["nan_bytes"])
        print(f"{row['format']:14} {row['device']:5} overflow={row['finite_overflow']:8} inf={row['inf_input']:8} "
              f"NaN bytes (+/-)={nan} -0.0 byte=0x{row['negative_zero_byte']:02X}  torch {row['torch_version']}")
    return rows


def _kind_of_recording(path: str) -> str | None:
    """The `schema` a recording's meta names (None when it names none or is unreadable: the
    accumulation loader then says what is wrong)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return meta.get("schema") if isinstance(meta, dict) else None


def _accumulation(args) -> list[dict]:
    from normtheory.precision.lowprecision.accumulation import analyse  # numerics: not needed for --help

    if not args.recording:
        raise UsageError("fp8 accumulation needs a recording: normtheory fp8 accumulation REC.npz")
    if _kind_of_recording(args.recording) == KERNEL_RECORDING:
        raise UsageError(f"{args.recording} is a kernel recording (normtheory record): judge it with `normtheory "
                         f"check {args.recording}`; fp8 accumulation reads a recording of matrix products made by "
                         "`python benchmarks/accumulation_probe.py --out REC.npz`")
    rows = [asdict(e) for e in analyse(args.recording)]
    for row in rows:
        bound = "≥ " if row["at_least"] else "≤ " if row["at_most"] else ""
        print(f"{row['label']:30} K={row['k']:6d} {row['model']:8} bits {bound}{row['bits']:.2f}  "
              f"mean rel err {row['mean_rel_err']:.3e}")
    return rows


def run(args) -> int:
    if args.action not in ACTIONS:
        raise UsageError(f"unknown fp8 action {args.action!r}; known: {', '.join(ACTIONS)}")
    check_writable(args.json, flag="--json", inputs=(args.recording,))
    rows = _probe(args) if args.action == "probe" else _accumulation(args)
    if args.json:
        write_json_file(args.json, {"schema": "normtheory.fp8/1", "action": args.action, "results": rows})
    return 0
