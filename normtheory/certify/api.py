"""Python entry points: `prepare(...)` validates a certification request into a Config,
`certify_kernel(...)` runs it and returns (certificate, state)."""

from __future__ import annotations

import math
import time

from normtheory.certify.engine import Config, certify
from normtheory.certify.inputs import default_max_abs
from normtheory.certify.judge import Setting
from normtheory.errors import UsageError
from normtheory.formats import get_format
from normtheory.registry import get_spec, resolve_params

FUSED_OPS = {"add_layernorm": "layernorm", "add_rmsnorm": "rmsnorm"}
CERTIFIABLE_FORMATS = ("fp32", "fp16", "bf16")  # fp64 outputs need a reference beyond fp32
FP8_OUTPUTS = ("fp8_e4m3fn", "fp8_e5m2")  # with --scaling: kernels return (y, scale)


def _contract(contract: str) -> str:
    from normtheory.precision.models import get_model

    if contract == "default":
        return contract
    if contract.startswith("model:"):
        get_model(contract.split(":", 1)[1])  # UsageError on unknown models
        return contract
    if contract.startswith("ulp:"):
        try:
            k = float(contract.split(":", 1)[1])
        except ValueError:
            raise UsageError(f"contract {contract!r}: K in ulp:K must be a number") from None
        if not (k >= 0 and math.isfinite(k)):
            raise UsageError(f"contract {contract!r}: K must be finite and >= 0")
        return contract
    raise UsageError(f"unknown contract {contract!r}; known: default, model:NAME, ulp:K")


def prepare(kernel, *, op: str, format: str, d: int, w_format=None, out_format=None, eps=None,
            eps_mode="inside", affine=None, p=None, contract="default", max_abs=None, inputs=None,
            autocast=False, device="cpu", seed=0, budget=512, backward=True, search=True,
            scaling=None) -> Config:
    """Validate everything a user gave (UsageError, exit 2) and build the run's Config."""
    from normtheory.kernels.catalog import Kernel, catalog_defaults, resolve_kernel

    base_op = FUSED_OPS.get(op, op)
    get_spec(base_op)  # unknown op → UsageError
    for name, value in (("format", format), ("w-format", w_format)):
        if value is not None and value not in CERTIFIABLE_FORMATS:
            raise UsageError(f"--{name} {value}: certify supports {', '.join(CERTIFIABLE_FORMATS)}")
    if out_format is not None and out_format not in CERTIFIABLE_FORMATS + FP8_OUTPUTS:
        raise UsageError(f"--out-format {out_format}: certify supports {', '.join(CERTIFIABLE_FORMATS + FP8_OUTPUTS)}")
    saturate = True
    if out_format in FP8_OUTPUTS:
        saturate = _fp8_scaling_checks(scaling, out_format, device)
        backward = False  # no bound for gradients through an fp8 output
    elif scaling is not None:
        raise UsageError("--scaling is for fp8 outputs (--out-format fp8_e4m3fn or fp8_e5m2)")
    if not isinstance(d, int) or d < 2 or d > 1 << 16:
        raise UsageError(f"--d must be an integer from 2 to 65536, got {d!r}")
    if budget < 1:
        raise UsageError(f"--budget must be >= 1, got {budget}")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here")
    if affine is None and isinstance(kernel, str):
        affine = catalog_defaults(kernel).get("affine")
    params = resolve_params(base_op, eps=eps, eps_mode=eps_mode, affine=affine, p=p)
    if isinstance(kernel, Kernel):
        resolved = kernel
    elif isinstance(kernel, str):
        resolved = resolve_kernel(kernel, op=op, affine=params.affine)
    elif callable(kernel):
        from normtheory.kernels.catalog import _hash_source

        resolved = Kernel(getattr(kernel, "__qualname__", "callable"), kernel, None, op in FUSED_OPS, None, False,
                          "python callable", _hash_source(kernel))
    else:
        raise UsageError(f"kernel must be a catalog name, module:callable or a callable, got {kernel!r}")
    if resolved.scaled_output is not None and resolved.scaled_output != (scaling is not None):
        raise UsageError(f"kernel {resolved.name} {'returns' if resolved.scaled_output else 'does not return'} an fp8 "
                         "output with a scale: " + ("give --out-format fp8_* --scaling R" if resolved.scaled_output
                                                     else "drop --scaling"))
    if resolved.needs_cuda and device != "cuda":
        raise UsageError(f"kernel {resolved.name} runs on CUDA only: add --device cuda")
    if resolved.fused != (op in FUSED_OPS):
        raise UsageError(f"kernel {resolved.name} is {'a fused add+norm' if resolved.fused else 'a plain'} kernel; "
                         f"--op {op} is {'fused' if op in FUSED_OPS else 'plain'}")
    fmt = get_format(format)
    w_fmt = get_format(w_format) if w_format else fmt
    out_fmt = get_format(out_format) if out_format else fmt
    limit = default_max_abs(fmt)
    if max_abs is None:
        max_abs = limit
    elif not (0 < max_abs <= fmt.max_finite):
        raise UsageError(f"--max-abs must be in (0, {fmt.max_finite:g}] for {fmt.name}, got {max_abs!r}")
    if base_op == "lpnorm":
        backward = False  # no backward bound for Lp yet: the certificate says so
        if params.eps_mode != "inside":
            raise UsageError("lpnorm is certified with eps inside only")
    setting = Setting(base_op, fmt, w_fmt, out_fmt, params.eps, params.eps_mode, params.affine, params.p,
                      _contract(contract), scaling, saturate)
    if scaling is not None and setting.contract != "default":
        raise UsageError("fp8 outputs are certified under the default contract only")
    spec = get_spec(base_op)
    if inputs is not None:
        import os

        if not os.path.isfile(inputs):
            raise UsageError(f"--inputs {inputs}: no such file")
    return Config(kernel=resolved, setting=setting, d=d, n=spec.input_width(d), max_abs=float(max_abs), seed=seed,
                  budget=budget, device=device, autocast=autocast, backward=backward, search=search,
                  inputs_path=inputs, families=spec.families)


def _fp8_scaling_checks(scaling, out_format, device) -> bool:
    """Validate --scaling; return whether the installed torch's cast to out_format saturates."""
    from normtheory.precision.lowprecision.scaling import parse_scaling

    if scaling is None:
        raise UsageError(f"--out-format {out_format} needs --scaling tensor|row|block:N|mx[:N]")
    try:
        kind, _ = parse_scaling(scaling)
    except (ValueError, UsageError) as exc:
        raise UsageError(f"--scaling {scaling!r}: {exc}") from None
    if kind == "delayed":
        raise UsageError("--scaling delayed depends on the amax history of earlier steps; certify judges one "
                         "step at a time (use tensor, row, block:N or mx)")
    from normtheory.kernels.fp8_probe import probe_cast

    return probe_cast(out_format, device).saturates


def certify_kernel(config: Config, *, op: str, show_progress: bool = False) -> tuple[dict, object]:
    from normtheory.certify import certificate

    start = time.perf_counter()
    progress = None
    if show_progress:
        from tqdm import tqdm

        progress = tqdm(total=config.budget, unit="row", desc=f"certify {config.kernel.name}", leave=False)
    try:
        state = certify(config, progress)
    finally:
        if progress is not None:
            progress.close()
    cert = certificate.build(config, state, kernel_name=config.kernel.name, op=op,
                             contract=config.setting.contract, compile_seconds=config.kernel.compile_seconds,
                             wall_seconds=time.perf_counter() - start)
    return cert, state


def certifier_verdict(kernel_name: str, *, op: str = "lpnorm", p=None, format: str, d: int, eps=None, seed: int = 0,
                      budget: int = 128) -> str:
    """"pass" / "fail" of a quick certification (the `normtheory lp` table's last column);
    "not applicable" for formats the certifier does not take."""
    if format not in CERTIFIABLE_FORMATS:
        return "not applicable"
    config = prepare(kernel_name, op=op, format=format, d=d, eps=eps, p=p, seed=seed, budget=budget)
    cert, _ = certify_kernel(config, op=op)
    return cert["verdict"]
