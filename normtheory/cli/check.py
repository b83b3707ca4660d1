"""`normtheory check REC.npz [--contract C] [--json CERT.json]`: judge a recording anywhere."""

from __future__ import annotations

import argparse

from normtheory.cli.certify import EXIT_CODES, check_outputs, print_summary
from normtheory.output_files import write_json_file


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (f"{EXIT_CODES}\n\nexamples:\n"
                     "  normtheory record torch.rms_norm --op rmsnorm --format bf16 --d 1024 --out rec.npz   # GPU host\n"
                     "  normtheory check rec.npz --json cert.json                                          # anywhere\n"
                     "  normtheory check rec.npz --contract model:llama\n"
                     "A recording whose arrays disagree with its meta, or that lacks an output its call\n"
                     "produced (gx beside gy, say), is corrupt: exit 2.")
    parser.add_argument("recording", help="a recording written by `normtheory record` or `certify --worst-out` (.npz)")
    parser.add_argument("--contract", default="default", help="default | ulp:K | model:NAME (see certify --help)")
    parser.add_argument("--json", default=None, help="write the certificate here")


def run(args: argparse.Namespace) -> int:
    # not at the top: normtheory.certify imports torch, too slow for `normtheory --help`
    from normtheory.certify.check import check_recording
    from normtheory.certify.recording import load

    check_outputs(args, "json")
    arrays, meta = load(args.recording)
    cert = check_recording(arrays, meta, args.contract, source=args.recording)
    if args.json:
        write_json_file(args.json, cert)
    print_summary(cert)
    return 0 if cert["verdict"] == "pass" else 1
