"""`normtheory reference`: correctly rounded y (and gx, gw, gb with --gy) written to an .npz.

Imports only numpy, mpmath, python-flint and numba on this path (no torch, no sympy).
"""

from __future__ import annotations

import argparse

from normtheory.errors import UndecidedRounding, UsageError
from normtheory.output_files import check_writable
from normtheory.registry import REGISTRY

_FORMATS = ("fp64", "fp32", "fp16", "bf16", "fp8_e4m3fn", "fp8_e5m2")
# From the registry, so that a new op does not have to edit help texts.
OPS_HELP = " | ".join(REGISTRY)
EPS_HELP = "default " + ", ".join(f"{spec.default_eps:g} for {op}" for op, spec in REGISTRY.items())


def add_norm_arguments(parser: argparse.ArgumentParser) -> None:
    """The normalizer flags shared by reference, certify and record (docs/design.md)."""
    parser.add_argument("--op", required=True, help=OPS_HELP)
    parser.add_argument("--format", required=True, help=f"dtype of x, w, b and the output: {' | '.join(_FORMATS)}")
    parser.add_argument("--w-format", default=None, help="dtype of w and b when it differs from --format")
    parser.add_argument("--eps", type=float, default=None, help=EPS_HELP)
    parser.add_argument("--eps-mode", default="inside", help="inside: x/sqrt(s+eps); outside: x/(sqrt(s)+eps)")
    parser.add_argument("--affine", default=None,
                        help="none | weight | weight_bias | offset_weight (default weight_bias for layernorm, weight otherwise)")
    parser.add_argument("--p", default=None, help="lpnorm exponent (>= 1, or inf)")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("exit codes: 0 written, 2 usage error (one line on stderr)\n\nexample:\n"
                     "  normtheory reference --op layernorm --format bf16 --x x.npy --gy gy.npy --out ref.npz")
    add_norm_arguments(parser)
    parser.add_argument("--x", required=True, help="input rows (.npy/.npz): values or raw bits of --format")
    parser.add_argument("--w", default=None, help="weight (length n); default: identity")
    parser.add_argument("--b", default=None, help="bias (length n); default: 0")
    parser.add_argument("--gy", default=None, help="incoming gradient (shape of x): also writes gx, gw, gb")
    parser.add_argument("--out", required=True, help="output .npz (values in --format, raw bits for bf16/fp8)")
    parser.add_argument("--force-slow", action="store_true", help="decide every element in arbitrary precision")


def run(args: argparse.Namespace) -> int:
    # not at the top: ml_dtypes (formats) takes half a second to import, numba and python-flint
    # (reference) longer, and `normtheory --help` imports every command module
    from normtheory.arrays import load_array, save_npz
    from normtheory.reference import correctly_rounded, resolve_settings

    # every flag before any file is read: a wrong --op is the first thing said, not a missing --x
    check_writable(args.out, flag="--out", inputs=(args.x, args.w, args.b, args.gy))
    _, fmt, w_fmt = resolve_settings(args.op, args.format, args.w_format, eps=args.eps, eps_mode=args.eps_mode,
                                     affine=args.affine, p=args.p)
    x = load_array(args.x, fmt, "x")
    w = load_array(args.w, w_fmt, "w") if args.w else None
    b = load_array(args.b, w_fmt, "b") if args.b else None
    gy = load_array(args.gy, fmt, "gy") if args.gy else None
    try:
        outputs, stats = correctly_rounded(
            args.op, x, w, b, format=fmt, w_format=w_fmt, eps=args.eps, eps_mode=args.eps_mode,
            affine=args.affine, p=args.p, gy=gy, force_slow=args.force_slow, return_stats=True)
    except UndecidedRounding as exc:
        raise UsageError(str(exc)) from None
    as_values = {name: values.astype("float64") for name, values in outputs.items()}
    save_npz(args.out, as_values, fmt, protected=(args.x, args.w, args.b, args.gy))
    escalated = sum(v for k, v in stats.items() if k != "elements")
    print(f"wrote {args.out}: {', '.join(f'{k}{tuple(v.shape)}' for k, v in outputs.items())} in {fmt.name}; "
          f"{escalated} of {stats['elements']} elements decided in arbitrary precision")
    return 0
