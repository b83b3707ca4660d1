"""Writing the files a command produces: checked up front, written whole, never over an input.

Every command validates its output paths before it runs anything long (`check_writable`), so a
missing directory is a usage error at once rather than after a 30-second certification; the
file is then written to a temporary name beside it and renamed (a crash leaves no half file),
with the permissions an ordinary `open(path, "w")` would give (mkstemp's 0600 would hide a
certificate from the CI user who reads it).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from normtheory.errors import UsageError


def check_writable(path: str | None, *, flag: str, inputs: tuple[str | None, ...] = ()) -> None:
    """UsageError unless `path`'s directory exists and `path` is none of the given inputs."""
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"cannot write {flag} {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a directory; give a file name")
    given = {os.path.realpath(p) for p in inputs if p}
    if os.path.realpath(path) in given:
        raise UsageError(f"{flag} {path} would overwrite an input file")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomically(path: str, data: bytes) -> None:
    check_writable(path, flag="output")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".normtheory-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_file(path: str, text: str) -> None:
    write_bytes_atomically(path, text.encode("utf-8"))


def write_json_file(path: str, data) -> None:
    write_text_file(path, json.dumps(data, indent=2, allow_nan=True, default=str) + "\n")


FIGURES_ENV = "NORMTHEORY_FIGURES"


def figures_dir(env: str = FIGURES_ENV) -> Path:
    """Where a notebook writes its figures: the folder named by $NORMTHEORY_FIGURES (created if
    need be; `NORMTHEORY_FIGURES=docs/figures` refreshes the committed ones), else a new
    temporary folder, so that running a notebook never overwrites the figures in the repository."""
    chosen = os.environ.get(env)
    if chosen:
        folder = Path(chosen).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix="normtheory-figures-"))
    print(f"figures go to {folder} (set {env} to choose; {env}=docs/figures refreshes the committed ones)")
    return folder
