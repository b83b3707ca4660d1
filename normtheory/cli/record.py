"""`normtheory record KERNEL [certify's options] --out REC.npz`: run a kernel over every input
family and save inputs and outputs as raw bits (certify/record.py says how), to be judged
later, anywhere, by `normtheory check`."""

from __future__ import annotations

import argparse

from normtheory.cli.certify import EXIT_CODES, add_kernel_arguments, check_outputs, config_from_args
from normtheory.errors import CheckFailed, UsageError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (f"{EXIT_CODES.replace('pass, 1 fail', 'written, 1 fail')}\n\nexample (on the GPU host, then "
                     "`normtheory check rec.npz` anywhere):\n"
                     "  normtheory record torch.rms_norm --op rmsnorm --format bf16 --d 1024 --device cuda --out rec.npz")
    add_kernel_arguments(parser, verb="record")
    parser.add_argument("--rows-per-family", type=int, default=None,
                        help="rows drawn from each family (default: budget / number of families)")
    parser.add_argument("--out", required=True, help="the recording to write (.npz)")


def run(args: argparse.Namespace) -> int:
    # not at the top: normtheory.certify imports torch, too slow for `normtheory --help`
    from normtheory.certify.record import record
    from normtheory.certify.recording import save
    from normtheory.certify.runner import KernelFault

    check_outputs(args, "out")
    if args.rows_per_family is not None and args.rows_per_family < 1:
        raise UsageError("--rows-per-family must be >= 1")
    config = config_from_args(args, search=False)
    try:
        arrays, meta = record(config, args.rows_per_family or max(1, args.budget // len(config.families)))
    except KernelFault as fault:
        raise CheckFailed(f"kernel fault while recording: {fault}") from None
    save(args.out, arrays, meta)
    rows = arrays["x"].shape[0]
    print(f"wrote {args.out}: {rows} rows x {config.n} ({len(meta['families'])} families), "
          f"arrays {', '.join(k for k, v in arrays.items() if v is not None)}")
    return 0
