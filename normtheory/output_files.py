"""Writing the files a command produces: checked up front, written whole, never over an input.

Every command validates all of its output paths before it runs anything long (`check_outputs`):
a missing or read-only directory, an output that names an input file or another output, is a
usage error at once rather than after a 30-second certification. Each file is then written to a
temporary name beside it and renamed (`replacing`: a crash leaves the previous file, never half
a new one), with the permissions an ordinary `open(path, "w")` would give (mkstemp's 0600 would
hide a certificate from the CI user who reads it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from normtheory.errors import UsageError

Output = tuple[str, str | None]  # (the flag that named it, for messages; the path, or None when not asked for)


def check_outputs(outputs: Iterable[Output], inputs: Iterable[str | None] = ()) -> None:
    """UsageError unless every named output can be written without harm: its directory exists
    and is writable, it is not a directory, not one of `inputs`, and no two outputs are the same
    file (the second write would silently replace the first)."""
    given = [p for p in inputs if p]
    seen: dict[str, str] = {}
    for flag, path in outputs:
        if not path:
            continue
        _check_one(flag, path, given)
        target = os.path.realpath(path)
        if target in seen and not _is_special(path):  # two outputs to /dev/null lose nothing
            raise UsageError(f"{flag} {path} is the same file as {seen[target]}; give each output its own name")
        seen[target] = f"{flag} {path}"


def _check_one(flag: str, path: str, inputs: list[str]) -> None:
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a directory; give a file name")
    if _is_special(path):  # /dev/null, /dev/stdout: written in place, its directory is not ours
        if not os.access(path, os.W_OK):
            raise UsageError(f"cannot write {flag} {path}: permission denied")
        return
    # the real path: `replacing` writes through a symlink to its target's directory
    directory = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"cannot write {flag} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {flag} {path}: directory {directory} is not writable")
    # samefile also catches a hard link to an input; a path that does not exist yet is no input
    if os.path.exists(path) and any(os.path.exists(p) and os.path.samefile(p, path) for p in inputs):
        raise UsageError(f"{flag} {path} would overwrite an input file")


def _is_special(path: str) -> bool:
    """An existing file that is not a regular file or a directory: a device, a fifo."""
    return os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path)


def check_writable(path: str | None, *, flag: str, inputs: tuple[str | None, ...] = ()) -> None:
    """check_outputs for a command with a single output."""
    check_outputs([(flag, path)], inputs)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mode_for(target: str) -> int:
    """What open(target, "w") leaves: an existing file keeps its mode, a new one gets the umask's."""
    if os.path.isfile(target):
        return stat.S_IMODE(os.stat(target).st_mode)
    return 0o666 & ~_umask()


@contextlib.contextmanager
def replacing(path: str) -> Iterator[str]:
    """A temporary path beside `path` for the block to write (same suffix, so a writer that
    goes by the extension picks the same format), renamed over `path` when the block ends and
    removed when it raises. An OSError becomes a one-line UsageError."""
    check_writable(path, flag="output")
    special = _is_special(path)
    # a symlink keeps pointing where it did, its target is replaced; a device is opened by the
    # name given (/dev/stdout's real path is no file name when it is a pipe)
    target = path if special else os.path.realpath(path)
    with _as_usage_error(path):
        # a device is copied into, never renamed over (that would replace /dev/null itself); its
        # temporary goes to the system's temporary folder
        fd, tmp = tempfile.mkstemp(dir=None if special else os.path.dirname(target), prefix=".normtheory-",
                                   suffix=os.path.splitext(target)[1])
        os.close(fd)
        try:
            yield tmp
            if special:
                with open(tmp, "rb") as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
            else:
                os.chmod(tmp, _mode_for(target))
                os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


@contextlib.contextmanager
def _as_usage_error(path: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:  # a full disk, a lost permission: the user's to fix, not a traceback
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_bytes_atomically(path: str, data: bytes) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


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
