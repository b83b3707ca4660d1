"""`normtheory check REC.npz [--contract C] [--json CERT.json]`: judge a recording anywhere."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", help="a recording written by `normtheory record` (.npz)")
    parser.add_argument("--contract", default="default", help="default | ulp:K | model:NAME")
    parser.add_argument("--json", default=None, help="write the certificate here")


def run(args: argparse.Namespace) -> int:
    from normtheory.certify.check import check_recording
    from normtheory.certify.recording import load
    from normtheory.cli.certify import print_summary, protect_outputs, write_json

    protect_outputs(args, "json")
    arrays, meta = load(args.recording)
    cert = check_recording(arrays, meta, args.contract, source=args.recording)
    if args.json:
        write_json(args.json, cert)
    print_summary(cert)
    return 0 if cert["verdict"] == "pass" else 1
