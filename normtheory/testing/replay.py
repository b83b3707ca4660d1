"""Replaying a failed comparison without the kernel, on any machine.

With NORMTHEORY_SAVE_FAILURES=DIR set, a failing `assert_close_to_exact` writes its inputs and
outputs to DIR/<test>-<hash>.npz (values as float64 with their formats, settings as JSON; no
pickle). `python -m normtheory.testing.replay FILE.npz` judges them again and prints the same
message (exit 1), or says they pass (exit 0); a file it cannot read is exit 2, one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys

import numpy as np

from normtheory.errors import UsageError
from normtheory.formats import FORMATS
from normtheory.testing.arrays import Values

ENV = "NORMTHEORY_SAVE_FAILURES"
_INPUTS = ("x", "weight", "bias", "residual", "gy", "gh")


def current_test() -> str | None:
    """The pytest node id of the running test (pytest sets PYTEST_CURRENT_TEST)."""
    current = os.environ.get("PYTEST_CURRENT_TEST")
    return current.rsplit(" (", 1)[0] if current else None


def save(path_dir: str, arrays: dict[str, Values | None], settings: dict) -> str:
    """Write the comparison's arrays and settings; return the file's path."""
    stored, formats = {}, {}
    for name, values in arrays.items():
        if values is not None:
            stored[name] = values.values
            formats[name] = values.fmt.name
    meta = json.dumps({"settings": settings, "formats": formats, "test": current_test()})
    digest = hashlib.sha256(meta.encode() + b"".join(v.tobytes() for v in stored.values())).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", current_test() or "comparison")[-80:]
    os.makedirs(path_dir, exist_ok=True)
    path = os.path.join(path_dir, f"{slug}-{digest}.npz")
    np.savez(path, meta=np.array(meta), **stored)
    return path


def replay_hint(saved: str | None) -> str:
    test = current_test()
    if saved:
        return f"Replay (no kernel needed): python -m normtheory.testing.replay {saved}"
    rerun = f' {ENV}=DIR pytest "{test}"' if test else f" set {ENV}=DIR and run it again"
    return f"Replay:{rerun} saves the inputs and outputs; python -m normtheory.testing.replay FILE re-judges them."


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
    for name in _INPUTS:
        kwargs[name] = typed.get(name)
    actual = {name[len("actual_"):]: value for name, value in typed.items() if name.startswith("actual_")}
    return kwargs, actual


def main(argv: list[str] | None = None) -> int:
    from normtheory.testing import assert_close_to_exact

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
