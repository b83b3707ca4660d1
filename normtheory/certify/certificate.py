"""The certificate (DESIGN.md): verdict, metrics, safe domain, plain-language findings and
the environment, as JSON-ready data. Floats that matter are also given as float.hex."""

from __future__ import annotations

import math
import platform

import numpy as np

SCHEMA = "normtheory.certificate/1"
REFERENCE_NOTE = "exact result correctly rounded to fp32; failures are proven beyond its ½-ulp resolution"


def environment(kernel, device: str, autocast: bool) -> dict:
    import torch

    env = {
        "python": platform.python_version(), "platform": platform.platform(), "numpy": np.__version__,
        "torch": torch.__version__, "cuda": torch.version.cuda, "device": device, "autocast": autocast,
        "kernel_source_sha256_16": kernel.source_hash,
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "fp16_reduced_precision_reduction": bool(torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction),
        "bf16_reduced_precision_reduction": bool(torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction),
        "torch_num_threads": torch.get_num_threads(),
    }
    try:
        from importlib.metadata import version

        env["normtheory"] = version("normtheory")
    except Exception:  # not installed as a distribution (running from a checkout)
        env["normtheory"] = None
    for package in ("triton", "liger_kernel"):
        try:
            module = __import__(package)
            env[package] = getattr(module, "__version__", "unknown")
        except Exception:  # absent: recorded as such
            env[package] = None
    if device == "cuda" and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name()
        env["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
        env["driver"] = getattr(torch.cuda, "driver_version", lambda: None)() if hasattr(torch.cuda, "driver_version") else None
    else:
        env["device_name"] = platform.processor() or platform.machine()
    return env


def _hexed(value):
    return value.hex() if isinstance(value, float) and math.isfinite(value) else str(value)


def block(summary) -> dict:
    """A Summary as the certificate's forward/backward block, key floats also as float.hex."""
    block = summary.as_dict()
    for key in ("max_ulp", "max_rel", "max_err_over_bound"):
        block[key + "_hex"] = _hexed(float(block[key]))
    return block


def _offset_threshold(row_log) -> str | None:
    """'fails from |mean|/std ≈ X: up to N ulps' when the failing rows are the offset ones."""
    rows = [(offset, ratio, ulps) for label, offset, ratio, ulps in row_log
            if math.isfinite(offset) and not label.startswith(("domain_", "nan_"))]
    failing = [r for r in rows if r[1] > 1]
    passing = [r for r in rows if r[1] <= 1]
    if not failing or not passing:
        return None
    lowest_failing = min(r[0] for r in failing)
    if lowest_failing < 10 or any(r[0] >= lowest_failing for r in passing):
        return None  # failures are not explained by the offset alone
    return (f"forward fails from |mean|/std ≈ {lowest_failing:.2g} up: max {max(r[2] for r in failing):.3g} ulps "
            f"there; every row below passes")


def verdict_and_findings(state, contract: str) -> tuple[str, list[str]]:
    findings = list(state.faults)
    fwd = state.forward
    for family, ratio in sorted(fwd.per_label.items(), key=lambda kv: -kv[1]):
        if ratio > 1 and not family.startswith("domain_"):
            findings.append(f"forward fails `{contract}` on {family}: error {ratio:.3g}× the bound")
    if fwd.nonfinite:
        findings.append(f"forward: {fwd.nonfinite} non-finite outputs where the exact result is finite")
    for name, summary in [("forward", fwd)] + [(f"backward {q}", s) for q, s in state.backward.items()]:
        if summary.unbounded:
            where = ", ".join(sorted(summary.unbounded_by_label))
            findings.append(f"{name}: {summary.unbounded} of {summary.elements} elements have no finite bound under "
                            f"`{contract}` (the contract cannot judge them; families: {where})")
    threshold = _offset_threshold(state.row_log)
    if threshold:
        findings.append(threshold)
    if fwd.wrong_scale:
        findings.append(f"fp8 output: {fwd.wrong_scale} elements carry a scale the recipe cannot give")
    if fwd.nan_mismatch:
        findings.append(f"forward: {fwd.nan_mismatch} outputs are numbers where a NaN input should give NaN "
                        "(NaN inputs turned into numbers)")
    for quantity, summary in state.backward.items():
        for family, ratio in sorted(summary.per_label.items(), key=lambda kv: -kv[1]):
            if ratio > 1 and not family.startswith("domain_"):
                findings.append(f"backward {quantity} fails `{contract}` on {family}: error {ratio:.3g}× the bound")
                break
        if summary.nonfinite:
            findings.append(f"backward {quantity}: {summary.nonfinite} non-finite values where the exact result is finite")
    if state.hidden_mismatch:
        findings.append(f"fused residual sum: {state.hidden_mismatch} entries of x + residual are not correctly rounded")
    for quantity, models in (state.explanations or {}).items():
        name = "forward" if quantity == "y" else f"backward {quantity}"
        if models:
            names = ", ".join(f"model:{model} (max error/bound {ratio:.3g})" for model, ratio in models[:3])
            findings.append(f"{name} errors are consistent with {names}")
        else:
            findings.append(f"{name} errors are not explained by any named model of the precision model")
    findings.extend(state.findings)
    if not state.backward and state.backward_skipped:
        findings.append(state.backward_skipped)
    if state.search and state.search.get("max_err_over_bound", 0) > 1:
        findings.append(f"hypothesis search found error {state.search['max_err_over_bound']:.3g}× the bound "
                        f"(knobs {state.search['worst_knobs']})")
    ok = (not state.faults and fwd.max_err_over_bound <= 1 and fwd.nonfinite == 0 and fwd.nan_mismatch == 0
          and all(s.max_err_over_bound <= 1 and s.nonfinite == 0 for s in state.backward.values())
          and state.hidden_mismatch == 0 and state.deterministic is not False and state.domain_failures == 0)
    if ok:
        back = (f"≤ {max(s.max_err_over_bound for s in state.backward.values()):.3g} backward"
                if state.backward else "backward not checked")
        findings.insert(0, f"pass: max {fwd.max_ulp:.3g} ulps forward, error/bound ≤ {fwd.max_err_over_bound:.3g} "
                           f"forward and {back} under `{contract}`")
    return ("pass" if ok else "fail"), findings


def build(config, state, *, kernel_name: str, op: str, contract: str, compile_seconds, wall_seconds) -> dict:
    s = config.setting
    if s.op == "lpnorm":
        state.backward_skipped = "backward not certified: the precision model has no Lp backward bound yet"
    elif s.scaling:
        state.backward_skipped = "backward not certified: no bound for gradients through an fp8 output"
    elif not config.backward:
        state.backward_skipped = "backward not certified (forward only was asked for)"
    verdict, findings = verdict_and_findings(state, contract)
    return {
        "schema": SCHEMA, "verdict": verdict, "kernel": kernel_name, "op": op,
        **s.describe(state.out_fmt), "d": config.d, "contract": contract, "seed": config.seed, "budget": config.budget,
        "max_abs": config.max_abs,
        "max_abs_hex": float(config.max_abs).hex(),
        "environment": environment(config.kernel, config.device, config.autocast),
        "inputs_tested": state.rows_tested,
        "families": list(config.families) + (["captured"] if config.inputs_path else []),
        "reference": REFERENCE_NOTE,
        "forward": block(state.forward),
        "backward": {q: block(summary) for q, summary in state.backward.items()},
        "determinism": state.deterministic,
        "safe_domain": state.domain,
        "search": state.search,
        "findings": findings,
        "timing": {"wall_seconds_excluding_compile": wall_seconds - (compile_seconds or 0.0),
                   "kernel_seconds_excluding_compile": state.kernel_seconds - (compile_seconds or 0.0),
                   "compile_seconds": compile_seconds},
    }
