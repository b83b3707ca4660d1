"""Saving a failed comparison so that it can be replayed without the kernel (replay.py).

With NORMTHEORY_SAVE_FAILURES=DIR set, a failing `assert_close_to_exact` writes its inputs and
outputs to DIR/<test>-<hash>.npz (values as float64 with their formats, settings as JSON; no
pickle); `python -m normtheory.testing.replay FILE.npz` judges them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

import numpy as np

from normtheory.testing.arrays import Values

ENV = "NORMTHEORY_SAVE_FAILURES"
INPUTS = ("x", "weight", "bias", "residual", "gy", "gh")


def current_test() -> str | None:
    """The pytest node id of the running test (pytest sets PYTEST_CURRENT_TEST)."""
    current = os.environ.get("PYTEST_CURRENT_TEST")
    return current.rsplit(" (", 1)[0] if current else None


def save(path_dir: str, arrays: dict[str, Values | None], settings: dict) -> str:
    """Write the comparison's arrays and settings; return the file's path."""
    # Any, not np.ndarray: mypy matches **stored against savez's `allow_pickle: bool` as well
    stored: dict[str, Any] = {}
    formats: dict[str, str] = {}
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
