"""Record the catalog's kernels over every input family and judge each recording.

    PYTHONPATH=. python benchmarks/record_catalog.py --device cuda --out tests/data/certify/h100
    PYTHONPATH=. python benchmarks/record_catalog.py --device cpu --d 64 --out tests/data/certify/cpu

Writes one recording per kernel × format × d (`normtheory record`, raw bits, DESIGN.md) and a
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

ROWS_PER_FAMILY = {64: 8, 1024: 3, 4096: 2}
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
    args = parser.parse_args()
    from normtheory.certify.check import check_recording
    from normtheory.certify.recording import load
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
                arrays, meta = load(path)
                cert = check_recording(arrays, meta, "default", source=name)
                manifest.append({
                    "file": name, "kernel": kernel, "op": op, "format": fmt, "d": d, "recorded": True,
                    "verdict": cert["verdict"], "rows": cert["inputs_tested"],
                    "forward": {k: cert["forward"][k] for k in ("max_ulp", "max_err_over_bound")},
                    "backward": {q: {k: b[k] for k in ("max_ulp", "max_err_over_bound")}
                                 for q, b in cert["backward"].items()},
                    "findings": cert["findings"], "seconds": round(time.perf_counter() - start, 2),
                })
                print(f"{name}: {cert['verdict']}", flush=True)
    with open(os.path.join(args.out, "manifest.json"), "w") as handle:
        json.dump({"device": args.device, "environment": meta.get("environment") if manifest else None,
                   "recordings": manifest}, handle, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
