"""`normtheory certify`, `normtheory record` and `normtheory check` (DESIGN.md).

Exit codes: 0 pass, 1 fail (every fault of the kernel included), 2 usage or input error.
Imports torch only inside run(): `normtheory --help` stays fast.
"""

from __future__ import annotations

import argparse
import json

from normtheory.errors import UsageError

CERT_FORMATS = "fp32 | fp16 | bf16"


def add_kernel_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags certify and record share."""
    parser.add_argument("kernel", help="catalog name (torch.layer_norm, torch.rms_norm, hf.llama_rms_norm, "
                                       "hf.gemma_rms_norm, compiled.*, liger.*, add_rmsnorm, ...) or module:callable")
    parser.add_argument("--op", required=True, help="layernorm | rmsnorm | crmsnorm | lpnorm | add_layernorm | add_rmsnorm")
    parser.add_argument("--format", required=True, help=f"dtype of x, w, b and the output: {CERT_FORMATS}")
    parser.add_argument("--d", required=True, type=int, help="model width (a crmsnorm kernel receives d - 1 entries)")
    parser.add_argument("--w-format", default=None, help="dtype of w and b when it differs from --format")
    parser.add_argument("--out-format", default=None, help="dtype of the output when it differs from --format")
    parser.add_argument("--eps", type=float, default=None, help="default 1e-5 for layernorm, 1e-6 otherwise")
    parser.add_argument("--eps-mode", default="inside", help="inside: x/sqrt(s+eps); outside: x/(sqrt(s)+eps)")
    parser.add_argument("--affine", default=None, help="none | weight | weight_bias | offset_weight")
    parser.add_argument("--p", default=None, help="lpnorm exponent (>= 1, or inf)")
    parser.add_argument("--max-abs", type=float, default=None,
                        help="certified domain |x| <= A (default: min(largest finite of --format, 2^20))")
    parser.add_argument("--inputs", default=None, help="captured activations (.npz, array x) added to the families")
    parser.add_argument("--autocast", action="store_true", help="call the kernel under torch.autocast")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=512, help="at most N input rows (default 512)")
    parser.add_argument("--no-backward", action="store_true", help="certify the forward pass only")
    parser.add_argument("--scaling", default=None,
                        help="fp8 outputs (--out-format fp8_e4m3fn|fp8_e5m2): tensor | row | block:N | mx[:N]; "
                             "the kernel gets scaling= and out_dtype= and returns (y, scale), y ≈ q / scale")


def configure(parser: argparse.ArgumentParser) -> None:
    add_kernel_arguments(parser)
    parser.add_argument("--contract", default="default", help="default | ulp:K | model:NAME")
    parser.add_argument("--no-search", action="store_true", help="skip the hypothesis-guided search")
    parser.add_argument("--json", default=None, help="write the certificate here")
    parser.add_argument("--report", default=None, help="write a Markdown report here (plots next to it)")
    parser.add_argument("--worst-out", default=None, help="save the worst inputs as a recording (.npz)")


def config_from_args(args, *, contract: str = "default", search: bool = True):
    from normtheory.certify.api import prepare

    return prepare(args.kernel, op=args.op, format=args.format, d=args.d, w_format=args.w_format,
                   out_format=args.out_format, eps=args.eps, eps_mode=args.eps_mode, affine=args.affine, p=args.p,
                   contract=contract, max_abs=args.max_abs, inputs=args.inputs, autocast=args.autocast,
                   device=args.device, seed=args.seed, budget=args.budget, backward=not args.no_backward,
                   search=search, scaling=args.scaling)


def protect_outputs(args, *names) -> None:
    """Refuse to write over anything the user gave as an input."""
    import os

    given = {os.path.realpath(p) for p in (getattr(args, "inputs", None), getattr(args, "recording", None)) if p}
    for name in names:
        path = getattr(args, name, None)
        if path and os.path.realpath(path) in given:
            raise UsageError(f"--{name.replace('_', '-')} {path} would overwrite an input file")


def write_json(path: str, data: dict) -> None:
    import os
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, allow_nan=True, default=str)
        handle.write("\n")
    os.replace(tmp, path)


def print_summary(cert: dict) -> None:
    fwd = cert["forward"]
    print(f"{cert['verdict'].upper()}: {cert['kernel']} {cert['op']} {cert['format']} d={cert['d']} "
          f"contract {cert['contract']}; {cert['inputs_tested']} rows")
    print(f"  forward: max {fwd['max_ulp']:.3g} ulps, max error/bound {fwd['max_err_over_bound']:.3g}, "
          f"bias {fwd['mean_signed_err']:+.3g} ulps, SQNR {fwd['sqnr_db']:.1f} dB")
    for quantity, block in cert.get("backward", {}).items():
        print(f"  backward {quantity}: max {block['max_ulp']:.3g} ulps, max error/bound {block['max_err_over_bound']:.3g}")
    for finding in cert["findings"]:
        print(f"  - {finding}")


def run(args: argparse.Namespace) -> int:
    from normtheory.certify.api import certify_kernel

    protect_outputs(args, "json", "report", "worst_out")
    config = config_from_args(args, contract=args.contract, search=not args.no_search)
    cert, state = certify_kernel(config, op=args.op, show_progress=True)
    if args.worst_out:
        from normtheory.certify.recording import save_worst

        save_worst(args.worst_out, config, state, op=args.op)
        cert["worst_inputs_file"] = args.worst_out
    if args.json:
        write_json(args.json, cert)
    if args.report:
        from normtheory.certify.report import write_report

        write_report(args.report, cert, state)
    print_summary(cert)
    return 0 if cert["verdict"] == "pass" else 1
