"""`normtheory upstream`: probe the installed ml_dtypes, torch and Liger against docs/upstream.md.

Exit 0 when every covered version agrees with the table, 1 when one contradicts it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from normtheory.output_files import check_writable, write_text_file


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("exit codes: 0 every covered version agrees, 1 a covered version contradicts the table, "
                     "2 usage error. Example: normtheory upstream --json upstream.json")
    parser.add_argument("--markdown", action="store_true", help="print the table (docs/upstream.md) and exit")
    parser.add_argument("--json", metavar="OUT", help="also write the observations as JSON")


def run(args: argparse.Namespace) -> int:
    # not at the top: the probes import ml_dtypes and torch, too slow for `normtheory --help`
    from normtheory.upstream.compare import observe_all
    from normtheory.upstream.report import markdown_table, observations_table

    check_writable(args.json, flag="--json")
    if args.markdown:
        print(markdown_table(), end="")
        return 0
    observations = observe_all()
    print(observations_table(observations), end="")
    if args.json:
        write_text_file(args.json, json.dumps([asdict(o) for o in observations], indent=1) + "\n")
    return 1 if any(o.failed for o in observations) else 0
