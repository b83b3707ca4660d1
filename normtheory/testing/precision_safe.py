"""`assert_precision_safe`: a certification as a pytest assertion for users' CI.

    from normtheory.testing import assert_precision_safe
    assert_precision_safe(my_rms_norm, op="rmsnorm", format="bf16", d=4096)

Raises AssertionError with a message in the spirit of torch.testing.assert_close: how many
elements failed, the worst one, the bound used and the `normtheory certify` command that
reproduces it (the same settings, budget and seed as the command line's defaults).
"""

from __future__ import annotations

import shlex

CLI_BUDGET = 512  # `normtheory certify --budget` default: the same run from Python and the shell


def assert_precision_safe(kernel, *, op: str, format: str, d: int, contract: str = "default", eps=None,
                          eps_mode: str = "inside", affine=None, p=None, w_format=None, out_format=None,
                          scaling=None, max_abs=None, seed: int = 0, budget: int = CLI_BUDGET, backward: bool = True,
                          search: bool = True, device: str = "cpu") -> dict:
    """Certify `kernel` (a callable, catalog name or module:callable); return the certificate
    on pass, raise AssertionError on fail. Usage errors raise normtheory.errors.UsageError."""
    __tracebackhide__ = True
    from normtheory.certify.api import certify_kernel, prepare

    config = prepare(kernel, op=op, format=format, d=d, w_format=w_format, out_format=out_format, eps=eps,
                     eps_mode=eps_mode, affine=affine, p=p, contract=contract, max_abs=max_abs, seed=seed,
                     budget=budget, backward=backward, search=search, device=device, scaling=scaling)
    cert, _ = certify_kernel(config, op=op)
    if cert["verdict"] == "pass":
        return cert
    command = reproduce_command(kernel, cert, backward=config.backward, search=search, device=device)
    raise AssertionError(failure_message(cert, command))


def kernel_spec(kernel) -> tuple[str, bool]:
    """How the command line names `kernel`, and whether that name imports from a shell."""
    if isinstance(kernel, str):
        return kernel, True
    target = getattr(kernel, "eager_fn", kernel)
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    if module and qualname and module != "__main__" and "<" not in qualname:
        return f"{module}:{qualname}", True
    return "MODULE:CALLABLE", False


def reproduce_command(kernel, cert: dict, *, backward: bool, search: bool, device: str) -> str:
    """The `normtheory certify` command with every setting this certification used."""
    spec, importable = kernel_spec(kernel)
    args = ["normtheory", "certify", spec, "--op", cert["op"], "--format", cert["format"], "--d", str(cert["d"]),
            "--contract", cert["contract"], "--eps", repr(float(cert["eps"])), "--eps-mode", cert["eps_mode"],
            "--affine", cert["affine"], "--max-abs", repr(float(cert["max_abs"])),
            "--seed", str(cert["seed"]), "--budget", str(cert["budget"])]
    if cert.get("w_format") and cert["w_format"] != cert["format"]:
        args += ["--w-format", cert["w_format"]]
    if cert.get("out_format") and cert["out_format"] != cert["format"]:
        args += ["--out-format", cert["out_format"]]
    if cert.get("scaling"):
        args += ["--scaling", cert["scaling"]]
    if cert.get("p") is not None:
        args += ["--p", str(cert["p"])]
    if device != "cpu":
        args += ["--device", device]
    if not backward:
        args.append("--no-backward")
    if not search:
        args.append("--no-search")
    command = shlex.join(args + ["--worst-out", "worst.npz"])
    if not importable:
        command += "   (the kernel has no importable name: give it as module:callable)"
    return command


def failure_message(cert: dict, command: str) -> str:
    lines = [f"Kernel {cert['kernel']} is not precision-safe for {cert['op']} in {cert['format']} "
             f"(d={cert['d']}, contract {cert['contract']}, seed {cert['seed']})."]
    blocks = [("y", cert["forward"])] + list(cert.get("backward", {}).items())
    for name, block in blocks:
        failed = block["over_bound"] + block["nonfinite"] + block.get("nan_not_propagated", 0)
        if failed == 0 and block["max_err_over_bound"] <= 1:
            continue
        worst = block["worst_case"]
        lines.append(
            f"Mismatched elements in {name}: {failed} / {block['elements']} "
            f"({100.0 * failed / max(block['elements'], 1):.2g}%)")
        lines.append(
            f"Greatest error/bound: {block['max_err_over_bound']:.4g} at {worst.get('label')} row index "
            f"{worst.get('index')} (got {worst.get('got')!r}, exact ≈ {worst.get('reference_fp32')!r}, "
            f"{worst.get('ulps', float('nan')):.3g} ulps)")
    lines += [f"- {finding}" for finding in cert["findings"]]
    lines.append(f"Reproduce: {command}")
    return "\n".join(lines)
