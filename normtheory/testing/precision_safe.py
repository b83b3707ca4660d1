"""`assert_precision_safe`: a certification as a pytest assertion for users' CI.

    from normtheory.testing import assert_precision_safe
    assert_precision_safe(my_rms_norm, op="rmsnorm", format="bf16", d=4096)

Raises AssertionError with a message in the spirit of torch.testing.assert_close: how many
elements failed, the worst one, the bound used and how to reproduce it.
"""

from __future__ import annotations


def assert_precision_safe(kernel, *, op: str, format: str, d: int, contract: str = "default", eps=None,
                          eps_mode: str = "inside", affine=None, p=None, w_format=None, out_format=None,
                          max_abs=None, seed: int = 0, budget: int = 256, backward: bool = True, search: bool = True,
                          device: str = "cpu") -> dict:
    """Certify `kernel` (a callable, catalog name or module:callable); return the certificate
    on pass, raise AssertionError on fail. Usage errors raise normtheory.errors.UsageError."""
    from normtheory.certify.api import certify_kernel, prepare

    config = prepare(kernel, op=op, format=format, d=d, w_format=w_format, out_format=out_format, eps=eps,
                     eps_mode=eps_mode, affine=affine, p=p, contract=contract, max_abs=max_abs, seed=seed,
                     budget=budget, backward=backward, search=search, device=device)
    cert, _ = certify_kernel(config, op=op)
    if cert["verdict"] == "pass":
        return cert
    raise AssertionError(failure_message(cert))


def failure_message(cert: dict) -> str:
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
    lines.append(f"Reproduce: normtheory certify KERNEL --op {cert['op']} --format {cert['format']} --d {cert['d']} "
                 f"--contract {cert['contract']} --seed {cert['seed']} --budget {cert['budget']} --worst-out worst.npz")
    return "\n".join(lines)
