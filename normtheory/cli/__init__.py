"""The `normtheory` console script.

Each subcommand lives in its own module exposing `configure(parser)` and `run(args) -> int`.
Those modules must import nothing heavy at module level (no torch, sympy, transformers):
`normtheory --help` has to answer in well under a second.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from normtheory.errors import CheckFailed, UndecidedRounding, UsageError

# name -> (module, one-line help). Order is the order shown in --help.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "reference": ("normtheory.cli.reference", "correctly rounded outputs (and VJPs) of a normalizer"),
    "certify": ("normtheory.cli.certify", "certify a normalization kernel against the correctly rounded reference"),
    "record": ("normtheory.cli.record", "run a kernel over the input families and save a recording"),
    "check": ("normtheory.cli.check", "judge a recording (no GPU needed)"),
    "sweep": ("normtheory.cli.sweep", "record (and check) a grid of kernels and settings: local pool or Slurm"),
    "meanfield": ("normtheory.cli.meanfield", "mean-field predictions vs Monte Carlo measurement"),
    "lp": ("normtheory.cli.lp", "Lp normalizers: safe input range of naive and stable kernels, conditioning, bounds"),
    "fp8": ("normtheory.cli.fp8", "fp8 cast semantics of this torch (probe); accumulator bits from a recording"),
    "upstream": ("normtheory.cli.upstream",
                 "probe what the installed ml_dtypes, torch and Liger do with numbers, against docs/upstream.md"),
    "equiv": ("normtheory.cli.equiv",
              "Pre-LN ≡ Pre-RMSNorm ≡ Pre-CRMSNorm: convert a model, check logits, gradients and training"),
    "train-probe": ("normtheory.cli.train_probe", "train tiny decoders: Curse of Depth, Mix-/Peri-LN gradients, warm-up"),
}


class _ArgumentParser(argparse.ArgumentParser):
    """argparse prints usage and exits 2 on a bad flag; we want one line on stderr, exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{self.prog}: {message}")

    def format_help(self) -> str:
        # a subcommand may give `lazy_epilog`, a function building text that needs imports too
        # slow for every start (certify's list of model names): called only when help is shown
        lazy = getattr(self, "lazy_epilog", None)
        if lazy is not None:
            self.epilog = lazy()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="normtheory",
        description="Numerics and theory checks for Transformer normalization layers.",
        epilog="exit codes: 0 success or pass, 1 a failed check or certificate, 2 usage error (one line on stderr). "
               "`normtheory COMMAND --help` for each command's flags and examples.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help(sys.stderr)
            return 2
        return int(args._run(args))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CheckFailed as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    except UndecidedRounding as exc:  # the reference's precision cap (Lp exact midpoints): no verdict
        print(f"error: the reference could not decide a rounding: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
