"""The certificate (docs/design.md): verdict, metrics, safe domain, plain-language findings and
the environment, as JSON-ready data. Floats that matter are also given as float.hex.

`build` is the one place a certificate is assembled, for a certification (`normtheory
certify`) and for a judged recording (`normtheory check`) alike: the checks a recording cannot
have (determinism, safe domain, search) read "not applicable" there.
"""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from normtheory.certify.findings import verdict_and_findings
from normtheory.certify.metrics import Summary
from normtheory.certify.setting import Setting

SCHEMA = "normtheory.certificate/1"
REFERENCE_NOTE = "exact result correctly rounded to fp32; failures are proven beyond its ½-ulp resolution"
NOT_APPLICABLE_TO_RECORDINGS = "not applicable to a recording: determinism, safe-domain bisection, hypothesis search"


@dataclass(frozen=True)
class Run:
    """What was run, as the certificate states it (beside the Setting and the measurements)."""

    kernel: str
    d: int
    seed: int | None
    budget: int | None
    max_abs: float
    environment: dict
    families: list
    recording: str | None = None  # the judged recording (normtheory check); None for a certification
    backward_note: str | None = None  # why the backward pass is not certified, when it is not
    timing: dict | None = None


def environment(kernel, device: str, autocast: bool) -> dict:
    import torch  # heavy: only once a certificate is written

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
        env["normtheory"] = version("normtheory")
    except PackageNotFoundError:  # not installed as a distribution (running from a checkout)
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
    if value is None:
        return None
    return value.hex() if isinstance(value, float) and math.isfinite(value) else str(value)


def block(summary: Summary) -> dict:
    """A Summary as the certificate's forward/backward block, key floats also as float.hex."""
    data = summary.as_dict()
    for key in ("max_ulp", "max_rel", "max_err_over_bound"):
        data[key + "_hex"] = _hexed(None if data[key] is None else float(data[key]))
    return data


def build(setting: Setting, state, run: Run) -> dict:
    """The certificate of one certification or one judged recording."""
    state.backward_skipped = run.backward_note
    verdict, findings = verdict_and_findings(state, setting.contract)
    recording = run.recording is not None
    if recording:
        findings.append(NOT_APPLICABLE_TO_RECORDINGS)
    cert = {
        "schema": SCHEMA, "verdict": verdict, "kernel": run.kernel, "op": setting.op_name,
        **setting.describe(state.out_fmt), "d": run.d, "contract": str(setting.contract), "seed": run.seed,
        "budget": run.budget, "max_abs": run.max_abs, "max_abs_hex": _hexed(float(run.max_abs)),
        "environment": run.environment,
        "inputs_tested": state.rows_tested,
        "families": list(run.families),
        "reference": REFERENCE_NOTE,
        "forward": block(state.forward),
        "backward": {q: block(summary) for q, summary in state.backward.items()},
        "determinism": "not applicable" if recording else state.deterministic,
        "safe_domain": "not applicable" if recording else state.domain,
        "search": "not applicable" if recording else state.search,
        "findings": findings,
        "timing": run.timing,
    }
    if recording:
        cert["recording"] = run.recording
    return cert
