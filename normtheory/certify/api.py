"""Python entry points: `prepare(...)` validates a certification request into a Config — every
argument, before any kernel runs — and `certify_kernel(...)` runs it and returns
(certificate, state)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from normtheory.certify import certificate
from normtheory.certify.engine import Config, certify
from normtheory.certify.inputs import default_max_abs, load_captured
from normtheory.certify.judge import bound
from normtheory.certify.runner import Batch
from normtheory.certify.setting import Setting, make_setting, parse_op
from normtheory.errors import UsageError
from normtheory.formats import FloatFormat
from normtheory.kernels.catalog import Kernel, callable_kernel, catalog_defaults, resolve_kernel
from normtheory.kernels.fp8_probe import probe_cast
from normtheory.precision.contract import DEFAULT
from normtheory.precision.lowprecision.scaling import parse_scaling

CERTIFIABLE_FORMATS = ("fp32", "fp16", "bf16")  # fp64 outputs need a reference beyond fp32
FP8_OUTPUTS = ("fp8_e4m3fn", "fp8_e5m2")  # with --scaling: kernels return (y, scale)
FP8_KERNELS = "fp8.rms_norm or fp8.layer_norm (or your own module:callable returning (q, scale))"


def prepare(kernel, *, op: str, format: str, d: int, w_format=None, out_format=None, eps=None,
            eps_mode="inside", affine=None, p=None, contract="default", max_abs=None, inputs=None,
            round_inputs=False, autocast=False, device="cpu", seed=0, budget=512, backward=True, search=True,
            scaling=None) -> Config:
    """Validate everything a user gave (UsageError, exit 2) and build the run's Config."""
    spec, fused = parse_op(op)
    _check_formats(format=format, w_format=w_format, out_format=out_format)
    _check_run_size(d=d, budget=budget, device=device)
    if affine is None and isinstance(kernel, str):
        affine = catalog_defaults(kernel).get("affine")
    setting = make_setting(op, format=format, w_format=w_format, out_format=out_format, eps=eps, eps_mode=eps_mode,
                           affine=affine, p=p, contract=contract)
    resolved = _kernel(kernel, op=op, fused=fused, affine=setting.affine)
    _check_kernel_fits(resolved, setting=setting, out_format=out_format, scaling=scaling, device=device)
    if scaling is not None:
        setting = replace(setting, scaling=_certifiable_recipe(scaling, setting),
                          saturate=probe_cast(setting.out_fmt.name, device).saturates)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise UsageError(f"--seed must be an integer >= 0, got {seed!r}")
    if spec.takes_p and setting.eps_mode != "inside":
        raise UsageError(f"{spec.name} is certified with eps inside only")
    n = spec.input_width(d)
    backward, note = _backward_plan(setting, n=n, backward=backward)
    captured = None
    if inputs is not None:
        captured = load_captured(inputs, n=n, fmt=setting.fmt, round_inputs=round_inputs)
    elif round_inputs:
        raise UsageError("--round-inputs rounds the activations given with --inputs; there are none")
    return Config(kernel=resolved, setting=setting, d=d, n=n, max_abs=_domain(max_abs, setting.fmt), seed=seed,
                  budget=budget, device=device, autocast=autocast, backward=backward, search=search,
                  captured=captured, families=spec.families, backward_note=note)


def _check_formats(*, format, w_format, out_format) -> None:
    for name, value in (("format", format), ("w-format", w_format)):
        if value is not None and value not in CERTIFIABLE_FORMATS:
            raise UsageError(f"--{name} {value}: certify supports {', '.join(CERTIFIABLE_FORMATS)}")
    if out_format is not None and out_format not in CERTIFIABLE_FORMATS + FP8_OUTPUTS:
        raise UsageError(f"--out-format {out_format}: certify supports {', '.join(CERTIFIABLE_FORMATS + FP8_OUTPUTS)}")


def _check_run_size(*, d, budget, device) -> None:
    if not isinstance(d, int) or d < 2 or d > 1 << 16:
        raise UsageError(f"--d must be an integer from 2 to 65536, got {d!r}")
    if budget < 1:
        raise UsageError(f"--budget must be >= 1, got {budget}")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch  # only asked for when a CUDA run is requested

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here")


def _kernel(kernel, *, op: str, fused: bool, affine: str) -> Kernel:
    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, str):
        return resolve_kernel(kernel, op=op, affine=affine, fused=fused)
    if callable(kernel):
        return callable_kernel(kernel, fused=fused)
    raise UsageError(f"kernel must be a catalog name, module:callable or a callable, got {kernel!r}")


def _check_kernel_fits(kernel: Kernel, *, setting: Setting, out_format, scaling, device) -> None:
    """The kernel against the flags: fused or plain, CUDA, and the fp8-output flags (each message
    names the way out, so that no two of them send the user back and forth)."""
    fp8_out = out_format in FP8_OUTPUTS
    if kernel.scaled_output is False and (fp8_out or scaling is not None):
        raise UsageError(f"kernel {kernel.name} returns a plain output; an fp8 output is certified with a norm → fp8 "
                         f"kernel that returns (q, scale): {FP8_KERNELS}, with --out-format fp8_e4m3fn|fp8_e5m2 "
                         "--scaling tensor|row|block:N|mx[:N]")
    if fp8_out and scaling is None:
        raise UsageError(f"--out-format {out_format} needs --scaling tensor|row|block:N|mx[:N] and a kernel that "
                         f"returns (q, scale): {FP8_KERNELS}")
    if scaling is not None and not fp8_out:
        raise UsageError(f"--scaling is for fp8 outputs: add --out-format fp8_e4m3fn or fp8_e5m2 (kernels: {FP8_KERNELS})")
    if kernel.scaled_output and not fp8_out:
        raise UsageError(f"kernel {kernel.name} returns an fp8 output with a scale: give --out-format "
                         "fp8_e4m3fn|fp8_e5m2 and --scaling tensor|row|block:N|mx[:N]")
    if kernel.needs_cuda and device != "cuda":
        raise UsageError(f"kernel {kernel.name} runs on CUDA only: add --device cuda")
    if kernel.fused != setting.fused:
        raise UsageError(f"kernel {kernel.name} is {'a fused add+norm' if kernel.fused else 'a plain'} kernel; "
                         f"--op {setting.op_name} is {'fused' if setting.fused else 'plain'}")


def _certifiable_recipe(scaling, setting: Setting):
    recipe = parse_scaling(scaling)
    if recipe.kind == "delayed":
        raise UsageError("--scaling delayed depends on the amax history of earlier steps; certify judges one "
                         "step at a time (use tensor, row, block:N or mx)")
    if setting.contract != DEFAULT:
        raise UsageError("fp8 outputs are certified under the default contract only")
    return recipe


def _domain(max_abs: float | None, fmt: FloatFormat) -> float:
    if max_abs is None:
        return default_max_abs(fmt)
    if not (0 < max_abs <= fmt.max_finite):
        raise UsageError(f"--max-abs must be in (0, {fmt.max_finite:g}] for {fmt.name}, got {max_abs!r}")
    return float(max_abs)


def _backward_plan(setting: Setting, *, n: int, backward: bool) -> tuple[bool, str | None]:
    """(certify the backward?, why not): the contract must have a bound for every quantity that
    will be judged, which is tried here, on one row, before any kernel runs."""
    try:
        _try_bounds(setting, n, ("y",))
    except UsageError as exc:
        raise UsageError(f"--contract {setting.contract} cannot judge {setting.op} outputs: {exc}") from None
    if setting.scaling is not None:
        return False, "backward not certified: no bound for gradients through an fp8 output"
    gradients = _gradient_quantities(setting)
    try:  # when no contract bounds this op's gradients, forward only, and the certificate says so
        _try_bounds(replace(setting, contract=DEFAULT, eps_mode="inside"), n, gradients)
    except UsageError:
        return False, f"backward not certified: the precision model has no backward bound for {setting.op} yet"
    if not backward:
        return False, "backward not certified (forward only was asked for)"
    try:
        _try_bounds(setting, n, gradients)
    except UsageError as exc:
        placement = " with eps outside the root" if setting.eps_mode == "outside" else ""
        raise UsageError(f"--contract {setting.contract}{placement} has no bound for the backward pass ({exc}): "
                         "add --no-backward to certify the forward pass only") from None
    return True, None


def _gradient_quantities(setting: Setting) -> tuple[str, ...]:
    weight = setting.affine in ("weight", "weight_bias", "offset_weight")
    present = {"gx": True, "gw": weight, "gb": setting.affine == "weight_bias"}
    return tuple(q for q in setting.spec.gradients if present.get(q, False))


def _try_bounds(setting: Setting, n: int, quantities: tuple[str, ...]) -> None:
    """Evaluate the contract's bound for each quantity on one plain row (UsageError when the
    precision model has none: a model without gradients, eps outside, Lp's gradients)."""
    x = setting.fmt.round_to_float64(np.linspace(-1.0, 1.0, n)[None, :])
    w = np.ones(n) if setting.affine != "none" else None
    b = np.zeros(n) if setting.affine == "weight_bias" else None
    batch = Batch(x, w, b, np.ones_like(x), None, label="argument check")
    for quantity in quantities:
        exact = np.zeros(n if quantity in ("gw", "gb") else x.shape)  # only ulp:K reads it
        bound(quantity, batch, setting, exact, setting.out_fmt)


def certify_kernel(config: Config, *, op: str | None = None, show_progress: bool = False) -> tuple[dict, object]:
    """Run a prepared certification; `op` is accepted for older callers (the Config knows it)."""
    start = time.perf_counter()
    progress = None
    if show_progress:
        from tqdm import tqdm  # a terminal nicety, only for the command line

        progress = tqdm(total=config.budget, unit="row", desc=f"certify {config.kernel.name}", leave=False)
    try:
        state = certify(config, progress)
    finally:
        if progress is not None:
            progress.close()
    compile_seconds = config.kernel.compile_seconds
    wall, kernel_seconds = time.perf_counter() - start, state.kernel_seconds
    run = certificate.Run(
        kernel=config.kernel.name, d=config.d, seed=config.seed, budget=config.budget, max_abs=config.max_abs,
        environment=certificate.environment(config.kernel, config.device, config.autocast),
        families=list(config.families) + (["captured"] if config.captured else []), backward_note=config.backward_note,
        timing={"wall_seconds_excluding_compile": wall - (compile_seconds or 0.0),
                "kernel_seconds_excluding_compile": kernel_seconds - (compile_seconds or 0.0),
                "compile_seconds": compile_seconds})
    if config.captured is not None and config.captured.rounding_note:
        state.findings.append(config.captured.rounding_note)
    return certificate.build(config.setting, state, run), state


def certifier_verdict(kernel_name: str, *, op: str = "lpnorm", p=None, format: str, d: int, eps=None, seed: int = 0,
                      budget: int = 128) -> str:
    """"pass" / "fail" of a quick certification (the `normtheory lp` table's last column);
    "not applicable" for formats the certifier does not take."""
    if format not in CERTIFIABLE_FORMATS:
        return "not applicable"
    config = prepare(kernel_name, op=op, format=format, d=d, eps=eps, p=p, seed=seed, budget=budget)
    cert, _ = certify_kernel(config)
    return cert["verdict"]
