"""A Markdown table from a `--normtheory-report` file (the pytest plugin's margins): per test,
its outcome and the largest error/bound per output, tightest first.

    python benchmarks/margins_table.py margins.json [--out table.md]
"""

from __future__ import annotations

import argparse
import json
import sys


def table(report: dict) -> str:
    lines = ["| test | outcome | comparisons | max error/bound | y | gx | gw | gb |", "|---|---|---|---|---|---|---|---|"]
    for entry in report["tests"]:
        by_output = entry["by_output"]
        cells = [f"{by_output[q]:.4g}" if q in by_output else "–" for q in ("y", "gx", "gw", "gb")]
        lines.append(f"| `{entry['nodeid']}` | {entry['outcome']} | {entry['comparisons']} | "
                     f"{entry['max_err_over_bound']:.4g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    try:
        with open(args.report) as handle:
            report = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: {args.report}: {exc}", file=sys.stderr)
        return 2
    text = table(report)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
