"""`normtheory certify`: certify a kernel (docs/design.md); the flags it shares with `record`,
and the text summary it shares with `check`.

Exit codes: 0 pass, 1 fail (every fault of the kernel included), 2 usage or input error.
normtheory.certify (and with it torch) is imported only inside run(): `normtheory --help`
stays fast.
"""

from __future__ import annotations

import argparse

from normtheory import output_files
from normtheory.certify.report import report_paths, write_report
from normtheory.cli.reference import EPS_HELP, OPS_HELP
from normtheory.kernels.catalog import CATALOG
from normtheory.output_files import Output, write_json_file

CERT_FORMATS = "fp32 | fp16 | bf16"
KERNEL_HELP = f"catalog name ({', '.join(CATALOG)}) or module:callable"  # from the catalog: a new kernel edits no help
SIGNATURE = """\
KERNEL as module:callable (imported with the current directory on sys.path):
  fn(x, weight, bias, eps, **params) -> y          torch tensors in --format; weight/bias may be None;
                                                   params: p= for lpnorm
  fn(x, residual, weight, bias, eps) -> (y, x + residual)          --op add_rmsnorm | add_layernorm
  fn(x, weight, bias, eps, scaling=, out_dtype=) -> (q, scale)     --out-format fp8_*, y ~ q / scale
A kernel that raises, returns the wrong shape or dtype, or gives no gradient fails (exit 1)."""
EXIT_CODES = "exit codes: 0 pass, 1 fail (a kernel fault included), 2 usage error (one line on stderr)"


def add_kernel_arguments(parser: argparse.ArgumentParser, *, verb: str = "certify") -> None:
    """The flags certify and record share (`verb` is what the command does with the kernel)."""
    parser.add_argument("kernel", help=KERNEL_HELP)
    parser.add_argument("--op", required=True, help=f"{OPS_HELP} | add_layernorm | add_rmsnorm")
    parser.add_argument("--format", required=True, help=f"dtype of x, w, b and the output: {CERT_FORMATS}")
    parser.add_argument("--d", required=True, type=int, help="model width (a crmsnorm kernel receives d - 1 entries)")
    parser.add_argument("--w-format", default=None, help="dtype of w and b when it differs from --format")
    parser.add_argument("--out-format", default=None,
                        help="dtype of the output when it differs from --format (fp8_e4m3fn | fp8_e5m2 with --scaling)")
    parser.add_argument("--eps", type=float, default=None, help=EPS_HELP)
    parser.add_argument("--eps-mode", default="inside",
                        help="inside: x/sqrt(s+eps); outside: x/(sqrt(s)+eps) (no backward bound: add --no-backward)")
    parser.add_argument("--affine", default=None, help="none | weight | weight_bias | offset_weight")
    parser.add_argument("--p", default=None, help="lpnorm exponent (>= 1, or inf)")
    parser.add_argument("--max-abs", type=float, default=None,
                        help="certified domain |x| <= A (default: min(largest finite of --format, 2^20))")
    parser.add_argument("--inputs", default=None,
                        help="captured activations added to the families: a .npy array, or array `x` of a .npz, "
                             "rows of d entries, values of --format (or its raw bits)")
    parser.add_argument("--round-inputs", action="store_true",
                        help="round --inputs values that are not --format values (e.g. float64 activations) to "
                             "--format, and say how many changed")
    parser.add_argument("--autocast", action="store_true", help="call the kernel under torch.autocast")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of every random input (families, weights, gradients, search): the same seed "
                             "gives the same inputs and the same certificate (default 0)")
    parser.add_argument("--budget", type=int, default=512, help="at most N input rows (default 512)")
    parser.add_argument("--no-backward", action="store_true", help=f"{verb} the forward pass only")
    parser.add_argument("--scaling", default=None,
                        help="fp8 outputs (--out-format fp8_e4m3fn|fp8_e5m2, with an fp8.* kernel): tensor | row | "
                             "block:N | mx[:N]; the kernel gets scaling= and out_dtype= and returns (y, scale), "
                             "y ≈ q / scale")


def _epilog() -> str:
    # built only when --help is printed: the model names come from the precision model, whose
    # import costs about a second
    from normtheory.precision.models import MODELS

    return f"""{EXIT_CODES}

contracts (--contract):
  default     within the bound of a careful fp32 kernel (two-pass or Welford, tree reduction,
              rsqrt within 2 ulps, one rounding at the output)
  ulp:K       at most K ulps of the exact result, everywhere
  model:NAME  within the bound of one named algorithm model; NAME is one of
              {', '.join(MODELS)}

{SIGNATURE}

examples:
  normtheory certify torch.rms_norm --op rmsnorm --format bf16 --d 4096 --json cert.json --report report.md
  normtheory certify hf.llama_rms_norm --op rmsnorm --format bf16 --d 1024 --contract model:llama
  normtheory certify mykernels:rms_norm --op rmsnorm --format bf16 --d 4096 --inputs acts.npz --round-inputs
  normtheory certify fp8.rms_norm --op rmsnorm --format bf16 --d 4096 --out-format fp8_e4m3fn --scaling row
  normtheory certify torch.rms_norm --op rmsnorm --format bf16 --d 64 --budget 48 --worst-out worst.npz
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.lazy_epilog = _epilog  # type: ignore[attr-defined]  # read by cli._ArgumentParser.format_help
    add_kernel_arguments(parser)
    parser.add_argument("--contract", default="default", help="default | ulp:K | model:NAME (names below)")
    parser.add_argument("--no-search", action="store_true", help="skip the hypothesis-guided search")
    parser.add_argument("--json", default=None, help="write the certificate here")
    parser.add_argument("--report", default=None, help="write a Markdown report here (plots next to it)")
    parser.add_argument("--worst-out", default=None,
                        help="save the worst inputs as recordings for `normtheory check`: FILE (forward), "
                             "FILE.backward.npz, FILE.search.npz")


def config_from_args(args, *, contract: str = "default", search: bool = True):
    # not at the top (here and in run): normtheory.certify imports torch, too slow for --help
    from normtheory.certify.api import prepare

    return prepare(args.kernel, op=args.op, format=args.format, d=args.d, w_format=args.w_format,
                   out_format=args.out_format, eps=args.eps, eps_mode=args.eps_mode, affine=args.affine, p=args.p,
                   contract=contract, max_abs=args.max_abs, inputs=args.inputs, round_inputs=args.round_inputs,
                   autocast=args.autocast, device=args.device, seed=args.seed, budget=args.budget,
                   backward=not args.no_backward, search=search, scaling=args.scaling)


def check_outputs(args, *flags: str) -> None:
    """Every file the command will write, the report's plots and --worst-out's companions
    included: output_files.check_outputs, before anything runs."""
    from normtheory.certify.recording import worst_paths  # imports torch: not at the top

    outputs: list[Output] = []
    for flag in flags:
        path, name = getattr(args, flag), "--" + flag.replace("_", "-")
        if path and flag == "report":
            outputs += [(name, p) for p in report_paths(path)]
        elif path and flag == "worst_out":
            outputs += [(name, p) for p in worst_paths(path).values()]
        else:
            outputs.append((name, path))
    output_files.check_outputs(outputs, inputs=(getattr(args, "inputs", None), getattr(args, "recording", None)))


def _ulps(block: dict) -> str:
    case = block.get("max_ulp_case") or {}
    where = ""
    if case.get("label") is not None and block["max_ulp"] > 0:
        allowed = case.get("bound_ulps", float("nan"))
        where = f" on {case['label']}, where the bound allows {allowed:.3g}"
    return f"max {block['max_ulp']:.3g} ulps{where}"


def _sqnr(block: dict) -> str:
    by_family = {k: v for k, v in (block.get("sqnr_db_by_family") or {}).items() if not k.startswith("domain_")}
    text = f"SQNR {_db(block['sqnr_db'])}"
    if len(by_family) > 1:
        low, high = min(by_family, key=lambda k: by_family[k]), max(by_family, key=lambda k: by_family[k])
        text += f" (by family: {_db(by_family[low])} on {low} to {_db(by_family[high])} on {high})"
    return text


def _db(value: float) -> str:
    return "inf dB (no error)" if value == float("inf") else f"{value:.1f} dB"


def quantity_line(name: str, block: dict) -> str:
    """One quantity of a certificate in words: error/bound first (what the verdict rests on),
    then the error in ulps with what the bound allows there, bias and SQNR."""
    if block.get("max_ulp") is None:
        return f"  {name}: not judged (no output was judged: see the findings)"
    line = f"  {name}: max error/bound {block['max_err_over_bound']:.3g} (≤ 1 passes); {_ulps(block)}"
    if name == "forward":
        line += f"; bias {block['mean_signed_err']:+.3g} ulps; {_sqnr(block)}"
    return line


def print_summary(cert: dict) -> None:
    budget = f" (budget {cert['budget']})" if cert.get("budget") is not None else ""
    print(f"{cert['verdict'].upper()}: {cert['kernel']} {cert['op']} {cert['format']} d={cert['d']} "
          f"contract {cert['contract']}; {cert['inputs_tested']} rows{budget}")
    print(quantity_line("forward", cert["forward"]))
    for quantity, block in cert.get("backward", {}).items():
        print(quantity_line(f"backward {quantity}", block))
    compile_seconds = (cert.get("timing") or {}).get("compile_seconds")
    if compile_seconds is not None:
        print(f"  compile: {compile_seconds:.1f} s (torch.compile, forward and backward; not in the timings)")
    for finding in cert["findings"]:
        print(f"  - {finding}")


def run(args: argparse.Namespace) -> int:
    from normtheory.certify.api import certify_kernel
    from normtheory.certify.certificate import environment
    from normtheory.certify.recording import save_worst

    check_outputs(args, "json", "report", "worst_out")
    config = config_from_args(args, contract=args.contract, search=not args.no_search)
    cert, state = certify_kernel(config, show_progress=True)
    written = []
    if args.worst_out:
        written = save_worst(args.worst_out, config, state,
                             environment=environment(config.kernel, config.device, config.autocast))
        cert["worst_inputs_file"] = args.worst_out
        cert["worst_inputs_files"] = written
    if args.json:
        write_json_file(args.json, cert)
    if args.report:
        write_report(args.report, cert, state)
    print_summary(cert)
    for path in written:
        print(f"  wrote {path} (replay: normtheory check {path})")
    return 0 if cert["verdict"] == "pass" else 1
