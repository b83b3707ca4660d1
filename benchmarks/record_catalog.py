"""Record the catalog's kernels over every input family and judge each recording.

    PYTHONPATH=. python benchmarks/record_catalog.py --device cuda --no-check --out tests/data/certify/cuda
    PYTHONPATH=. python benchmarks/record_catalog.py --check-only --out tests/data/certify/cuda   # on CPU
    PYTHONPATH=. python benchmarks/record_catalog.py --device cpu --d 64 --out tests/data/certify/cpu

(The GPU host may lack numba and python-flint, which the reference needs: record there with
--no-check, then write the manifest on a CPU machine with --check-only.)

Writes one recording per kernel × format × d (`normtheory record`, raw bits, docs/design.md §Recordings) and a
manifest.json with what `normtheory check` says about each (verdict, worst ulps and error/bound,
forward and backward). CPU CI re-checks every recording listed in a manifest
(tests/test_certify_recorded.py). Rows per family shrink with d so that the whole set stays
small (a few MB at d = 4096).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROWS_PER_FAMILY = {64: 8, 1024: 3, 4096: 1}
KERNELS = {
    "cpu": ["torch.layer_norm", "torch.rms_norm", "hf.llama_rms_norm", "hf.gemma_rms_norm", "torch.crms_norm",
            "add_rmsnorm", "add_layernorm"],
    "cuda": ["torch.layer_norm", "torch.rms_norm", "hf.llama_rms_norm", "hf.gemma_rms_norm", "compiled.layer_norm",
             "compiled.rms_norm", "liger.layer_norm", "liger.rms_norm", "add_rmsnorm", "add_layernorm"],
}
OPS = {"torch.layer_norm": "layernorm", "compiled.layer_norm": "layernorm", "liger.layer_norm": "layernorm",
       "torch.crms_norm": "crmsnorm", "add_rmsnorm": "add_rmsnorm", "add_layernorm": "add_layernorm"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", required=True)
    parser.add_argument("--d", default="64,1024,4096")
    parser.add_argument("--formats", default="bf16,fp16,fp32")
    parser.add_argument("--kernels", default=None, help="comma-separated; default: the device's catalog kernels")
    parser.add_argument("--no-check", action="store_true", help="record only (a host without the reference)")
    parser.add_argument("--check-only", action="store_true", help="judge the recordings already in --out")
    args = parser.parse_args()
    if args.check_only:
        return check_directory(args.out)
    from normtheory.cli import main as cli

    os.makedirs(args.out, exist_ok=True)
    kernels = args.kernels.split(",") if args.kernels else KERNELS[args.device]
    manifest = []
    for kernel in kernels:
        op = OPS.get(kernel, "rmsnorm")
        for fmt in args.formats.split(","):
            for d in map(int, args.d.split(",")):
                name = f"{kernel.replace('.', '_')}_{fmt}_d{d}.npz"
                path = os.path.join(args.out, name)
                start = time.perf_counter()
                code = cli(["record", kernel, "--op", op, "--format", fmt, "--d", str(d), "--device", args.device,
                            "--rows-per-family", str(ROWS_PER_FAMILY.get(d, 2)), "--out", path])
                if code != 0:
                    manifest.append({"file": name, "kernel": kernel, "op": op, "format": fmt, "d": d,
                                     "recorded": False, "exit_code": code})
                    continue
                entry = {"file": name, "kernel": kernel, "op": op, "format": fmt, "d": d, "recorded": True,
                         "seconds": round(time.perf_counter() - start, 2)}
                if not args.no_check:
                    entry.update(judge(path, name))
                manifest.append(entry)
                print(f"{name}: {entry.get('verdict', 'recorded')}", flush=True)
    write_manifest(args.out, args.device, manifest)
    return 0


def judge(path: str, name: str) -> dict:
    from normtheory.certify.check import check_recording
    from normtheory.certify.recording import load

    arrays, meta = load(path)
    cert = check_recording(arrays, meta, "default", source=name)
    return {"verdict": cert["verdict"], "rows": cert["inputs_tested"],
            "forward": {k: cert["forward"][k] for k in ("max_ulp", "max_err_over_bound")},
            "backward": {q: {k: b[k] for k in ("max_ulp", "max_err_over_bound")} for q, b in cert["backward"].items()},
            "findings": cert["findings"], "environment": meta.get("environment")}


def write_manifest(directory: str, device: str, entries: list) -> None:
    with open(os.path.join(directory, "manifest.json"), "w") as handle:
        json.dump({"device": device, "recordings": entries}, handle, indent=1, default=str)


def check_directory(directory: str) -> int:
    """Judge every recording in `directory` (recorded elsewhere, e.g. on the GPU host)."""
    from normtheory.certify.recording import load

    entries = []
    for name in sorted(f for f in os.listdir(directory) if f.endswith(".npz")):
        _, meta = load(os.path.join(directory, name))
        entry = {"file": name, "kernel": meta["kernel"], "op": meta["op"], "format": meta["format"],
                 "d": meta.get("d"), "recorded": True, **judge(os.path.join(directory, name), name)}
        entries.append(entry)
        print(f"{name}: {entry['verdict']}", flush=True)
    write_manifest(directory, "recorded elsewhere (see each entry's environment)", entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
