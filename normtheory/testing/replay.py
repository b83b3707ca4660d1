"""Replaying a failed comparison without the kernel, on any machine.

With NORMTHEORY_SAVE_FAILURES=DIR set, a failing `assert_close_to_exact` writes its inputs and
outputs to DIR/<test>-<hash>.npz (values as float64 with their formats, settings as JSON; no
pickle). `python -m normtheory.testing.replay FILE.npz` judges them again and prints the same
message (exit 1), or says they pass (exit 0); a file it cannot read is exit 2, one line.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from normtheory.errors import UsageError
from normtheory.formats import FORMATS
from normtheory.testing.comparator import assert_close_to_exact
from normtheory.testing.failures import ENV, INPUTS


def load(path: str) -> tuple[dict, dict]:
    """(keyword arguments of assert_close_to_exact, the actual dict) from a saved file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: np.array(data[name]) for name in data.files if name != "meta"}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a saved comparison ({type(exc).__name__}: {exc})") from None
    typed = {name: arrays[name].astype(FORMATS[fmt].dtype) for name, fmt in meta["formats"].items()}
    kwargs = dict(meta["settings"])
    for name in INPUTS:
        kwargs[name] = typed.get(name)
    actual = {name[len("actual_"):]: value for name, value in typed.items() if name.startswith("actual_")}
    return kwargs, actual


def main(argv: list[str] | None = None) -> int:

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m normtheory.testing.replay FILE.npz", file=sys.stderr)
        return 2
    os.environ.pop(ENV, None)  # a replay must not save itself again
    try:
        kwargs, actual = load(args[0])
        assert_close_to_exact(actual, **kwargs)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AssertionError as exc:
        print(exc)
        return 1
    print("PASS: every output is within its derived bound")
    return 0


if __name__ == "__main__":
    sys.exit(main())
