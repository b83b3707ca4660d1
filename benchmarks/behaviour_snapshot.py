"""A fingerprint of what normtheory decides, to show a refactor changed nothing.

    python benchmarks/behaviour_snapshot.py OUT_DIR [--quick]
    diff -r BEFORE_DIR AFTER_DIR        # empty output: the same behaviour

Writes, with every volatile field (timings, environment, paths) removed:
- bounds.json: a SHA-256 of every bound the public `precision.tolerance` gives, per model
  contract (and default, ulp:2), op, format, family, quantity (y, gx, gw, gb) and kind (worst,
  probabilistic), on fixed seeded rows; the Lp worst-case bound per p;
- emulated.json: a SHA-256 of every emulated kernel's output (precision.emulation forward and
  backward, every model, eps inside and outside, every emulated op) on the same rows;
- reference.json: a SHA-256 of the correctly rounded reference's outputs and of how many
  elements each of its tiers decided, per op, format and family;
- checks/*.json: `normtheory check` of every committed recording (tests/data/certify/{cpu,cuda});
- certify/*.json: a few small seeded certifications (careful, defective, fp8, Lp kernels).
Bit-identical bounds are the strong claim: a sum reordered or a constant rounded differently
changes a hash. `--quick` skips the recordings and certifications (~2 min).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from normtheory.families import FAMILIES, draw_rows
from normtheory.formats import FORMATS
from normtheory.precision import MODELS, tolerance
from normtheory.precision.emulation.backward import backward
from normtheory.precision.emulation.forward import SUPPORTED_OPS, forward
from normtheory.reference import correctly_rounded
from normtheory.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = {"environment", "elapsed_s", "compile_s", "seconds", "timing", "recording", "worst_inputs_file",
            "kernel_source_hash", "created"}


def _digest(values) -> str:
    array = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
    return hashlib.sha256(array.tobytes()).hexdigest()[:16]


# every op of the registry but the Lp family (its bounds are fingerprinted per p below)
OPS = tuple(name for name, spec in REGISTRY.items() if not spec.takes_p)


def _affine_for(op):
    return REGISTRY[op].default_affine


def _eps_for(op):
    # at least 1e-6: an op whose default is smaller (l2normalize's 1e-12, a floor on the norm) then
    # has rows on both sides of its floor (the tiny family's below it, the others above)
    return max(REGISTRY[op].default_eps, 1e-6)


def _seeded_rows(family, fmt, n=48):
    rng = np.random.default_rng(7)
    x = draw_rows(family, rng, 4, n, fmt)
    w = fmt.round_to_float64(1 + 0.25 * rng.standard_normal(n))
    b = fmt.round_to_float64(0.5 * rng.standard_normal(n))
    gy = fmt.round_to_float64(rng.standard_normal(x.shape))
    return x, w, b, gy


def bound_fingerprints() -> dict[str, str]:
    out: dict[str, str] = {}
    contracts = ["default", "ulp:2"] + [f"model:{name}" for name in MODELS]
    for fmt_name in ("fp32", "bf16", "fp16"):
        fmt = FORMATS[fmt_name]
        for family in sorted(FAMILIES):
            rng = np.random.default_rng(7)
            n = 48
            x = draw_rows(family, rng, 4, n, fmt)
            w = fmt.round_to_float64(1 + 0.25 * rng.standard_normal(n))
            b = fmt.round_to_float64(0.5 * rng.standard_normal(n))
            gy = fmt.round_to_float64(rng.standard_normal(x.shape))
            for op in OPS:
                eps = _eps_for(op)
                affine = _affine_for(op)
                bias = b if affine == "weight_bias" else None
                for contract in contracts:
                    for quantity in ("y", "gx", "gw", "gb"):
                        if quantity == "gb" and bias is None:
                            continue
                        for kind in ("worst", "probabilistic"):
                            key = f"{fmt_name}/{family}/{op}/{contract}/{quantity}/{kind}"
                            try:
                                exact = None
                                if contract.startswith("ulp"):  # any values shaped like the quantity
                                    exact = np.abs(x) if quantity in ("y", "gx") else np.abs(x[0])
                                bound = tolerance(op, x, w, bias, format=fmt_name, eps=eps, affine=affine,
                                                  contract=contract, kind=kind, quantity=quantity,
                                                  gy=None if quantity == "y" else gy, exact=exact)
                                out[key] = _digest(bound)
                            except Exception as exc:  # a refusal is behaviour too
                                out[key] = f"{type(exc).__name__}: {exc}"
            for p in (1.0, 1.5, 2.0, 3.0, float("inf")):
                key = f"{fmt_name}/{family}/lpnorm/p={p}/y/worst"
                try:
                    out[key] = _digest(tolerance("lpnorm", x, w, None, format=fmt_name, eps=1e-6, affine="weight", p=p))
                except Exception as exc:
                    out[key] = f"{type(exc).__name__}: {exc}"
    return out


def emulated_fingerprints() -> dict[str, str]:
    out: dict[str, str] = {}
    for fmt_name in ("bf16", "fp16"):
        fmt = FORMATS[fmt_name]
        for family in ("normal", "offset_1e4", "tiny", "constant", "near_constant"):
            x, w, b, gy = _seeded_rows(family, fmt)
            for op in SUPPORTED_OPS:
                affine = _affine_for(op)
                for name, model in MODELS.items():
                    for eps_mode in ("inside", "outside"):
                        model_here = dataclasses.replace(model, eps_mode=eps_mode)
                        key = f"{fmt_name}/{family}/{op}/{name}/{eps_mode}"
                        try:
                            y = forward(op, x, w, b, model=model_here, eps=_eps_for(op), affine=affine,
                                        out_format=fmt_name)
                            grads = backward(op, x, gy, w, b, model=model_here, eps=_eps_for(op), affine=affine,
                                             grad_format=fmt_name)
                            out[key] = _digest(np.concatenate([y.ravel()] + [grads[k].ravel() for k in sorted(grads)]))
                        except Exception as exc:
                            out[key] = f"{type(exc).__name__}: {exc}"
    return out


def reference_fingerprints() -> dict[str, str]:
    out: dict[str, str] = {}
    for fmt_name in ("fp32", "bf16", "fp16"):
        fmt = FORMATS[fmt_name]
        for family in sorted(FAMILIES):
            x, w, b, gy = _seeded_rows(family, fmt)
            for op in REGISTRY:
                p = 3.0 if REGISTRY[op].takes_p else None
                for eps_mode in ("inside", "outside"):
                    key = f"{fmt_name}/{family}/{op}/{eps_mode}"
                    try:
                        result, stats = correctly_rounded(op, x, w, None, format=fmt_name, eps=_eps_for(op),
                                                          eps_mode=eps_mode, affine="weight", p=p, gy=gy,
                                                          return_stats=True, threads=1)
                        out[key] = _digest(np.concatenate([np.ravel(result[k]) for k in sorted(result)]))
                        out[key + "/tiers"] = json.dumps(stats, sort_keys=True, default=str)
                    except Exception as exc:
                        out[key] = f"{type(exc).__name__}: {exc}"
                    # forward only, unit weight, no bias: the row pass's lean loop
                    key += "/forward_unit_weight"
                    try:
                        result, stats = correctly_rounded(op, x, None, None, format=fmt_name, eps=_eps_for(op),
                                                          eps_mode=eps_mode, affine="none", p=p,
                                                          return_stats=True, threads=1)
                        out[key] = _digest(np.concatenate([np.ravel(result[k]) for k in sorted(result)]))
                        out[key + "/tiers"] = json.dumps(stats, sort_keys=True, default=str)
                    except Exception as exc:
                        out[key] = f"{type(exc).__name__}: {exc}"
    return out


def _scrub(value):
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _last_line(stderr: str) -> str:
    """The last stderr line without a progress bar's timing ("[00:00<00:00, 61.7row/s]")."""
    line = (stderr.strip().splitlines() or [""])[-1]
    return re.sub(r"\[[^\]]*(it|row)/s\]", "[timing]", line)


def _cli_json(args: list[str], json_path: Path) -> dict:
    result = subprocess.run([sys.executable, "-m", "normtheory", *args, "--json", str(json_path)],
                            capture_output=True, text=True, cwd=ROOT)
    data = json.loads(json_path.read_text()) if json_path.exists() else {}
    return {"exit": result.returncode, "stderr_last_line": _last_line(result.stderr),
            "certificate": _scrub(data)}


CERTIFICATIONS = {
    "torch_rms_norm_bf16": ["certify", "torch.rms_norm", "--op", "rmsnorm", "--format", "bf16"],
    "torch_layer_norm_fp16": ["certify", "torch.layer_norm", "--op", "layernorm", "--format", "fp16"],
    "one_pass_layer_norm_bf16": ["certify", "normtheory.kernels.defective:one_pass_layer_norm", "--op", "layernorm",
                                 "--format", "bf16"],
    "llama_model_contract": ["certify", "hf.llama_rms_norm", "--op", "rmsnorm", "--format", "bf16",
                             "--contract", "model:llama"],
    "fp8_rms_norm_row": ["certify", "fp8.rms_norm", "--op", "rmsnorm", "--format", "bf16", "--out-format",
                         "fp8_e4m3fn", "--scaling", "row", "--no-backward"],
    "lp_stable_p3": ["certify", "lp.stable", "--op", "lpnorm", "--p", "3", "--format", "bf16", "--no-backward"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bounds.json").write_text(json.dumps(bound_fingerprints(), indent=0, sort_keys=True) + "\n")
    (args.out / "emulated.json").write_text(json.dumps(emulated_fingerprints(), indent=0, sort_keys=True) + "\n")
    (args.out / "reference.json").write_text(json.dumps(reference_fingerprints(), indent=0, sort_keys=True) + "\n")
    if args.quick:
        return 0
    for device in ("cpu", "cuda"):
        target = args.out / "checks" / device
        target.mkdir(parents=True, exist_ok=True)
        for recording in sorted((ROOT / "tests" / "data" / "certify" / device).glob("*.npz")):
            data = _cli_json(["check", str(recording)], target / (recording.stem + ".raw.json"))
            (target / (recording.stem + ".json")).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            (target / (recording.stem + ".raw.json")).unlink(missing_ok=True)
    target = args.out / "certify"
    target.mkdir(parents=True, exist_ok=True)
    for name, command in CERTIFICATIONS.items():
        common = ["--d", "64", "--budget", "48", "--seed", "3"]
        data = _cli_json(command + common, target / (name + ".raw.json"))
        (target / (name + ".json")).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        (target / (name + ".raw.json")).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
