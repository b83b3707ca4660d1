"""The grid file: every combination of the `[grid]` lists, for every `[[kernel]]`, is one cell.

    out = "recordings"        # directory for the recordings (relative to this file)
    check = true              # also judge each recording (`normtheory check`, certificate next to it)
    contract = "default"      # the contract `check` judges with

    [[kernel]]
    name = "torch.rms_norm"   # any KERNEL `normtheory record` takes
    op = "rmsnorm"

    [grid]                    # `normtheory record` options, each a list of values
    format = ["bf16", "fp16", "fp32"]
    d = [1024, 4096]

    [options]                 # `normtheory record` options, the same for every cell
    budget = 128
    device = "cuda"

Option names are those of `normtheory record` without the dashes (w_format for --w-format);
`true` stands for a flag (no_backward = true). Every cell's arguments are checked against
`normtheory record`'s own parser before anything runs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
from dataclasses import dataclass

from normtheory.cli import record
from normtheory.errors import UsageError

_TOP_KEYS = {"out", "check", "contract", "kernel", "grid", "options"}
_RESERVED = {"out", "op", "kernel"}  # set by the grid's structure, not by options


@dataclass(frozen=True)
class Cell:
    name: str
    record_argv: tuple[str, ...]  # `normtheory record` arguments, --out excluded
    recording: str  # where this cell's recording goes (absolute path)


@dataclass(frozen=True)
class Grid:
    path: str
    out_dir: str
    cells: tuple[Cell, ...]
    check: bool
    contract: str


def load_grid(path: str, out_dir: str | None = None) -> Grid:
    """Read and validate a grid file; UsageError (one line) on anything wrong with it."""
    data = _read_toml(path)
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {sorted(unknown)} (allowed: {sorted(_TOP_KEYS)})")
    kernels = data.get("kernel")
    if not isinstance(kernels, list) or not kernels:
        raise UsageError(f"{path}: at least one [[kernel]] table with name and op is required")
    grid, options = _table(path, data, "grid"), _table(path, data, "options")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UsageError(f"{path}: [grid] {key} must be a non-empty list")
    clash = (set(grid) & set(options)) | ((set(grid) | set(options)) & _RESERVED)
    if clash:
        raise UsageError(f"{path}: option(s) {sorted(clash)} given twice or reserved")
    base = os.path.dirname(os.path.abspath(path))
    out_dir = os.path.abspath(out_dir or os.path.join(base, str(data.get("out", _stem(path) + "_recordings"))))
    cells = []
    for kernel in kernels:
        name, op = _kernel_entry(path, kernel)
        for values in itertools.product(*grid.values()):
            setting = dict(zip(grid, values))
            argv = (name, "--op", op, *_flags(setting), *_flags(options))
            label = "_".join([name, op] + [f"{k}{v}" for k, v in setting.items()])
            cell_name = re.sub(r"[^A-Za-z0-9._-]+", "-", label)
            cells.append(Cell(cell_name, argv, os.path.join(out_dir, cell_name + ".npz")))
    _check_cells(path, cells)
    return Grid(os.path.abspath(path), out_dir, tuple(cells), bool(data.get("check", False)),
                str(data.get("contract", "default")))


def _read_toml(path: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such grid file")
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _table(path: str, data: dict, key: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise UsageError(f"{path}: [{key}] must be a table")
    return value


def _kernel_entry(path: str, kernel) -> tuple[str, str]:
    if not isinstance(kernel, dict) or set(kernel) != {"name", "op"}:
        raise UsageError(f"{path}: each [[kernel]] needs exactly name and op, got {kernel!r}")
    return str(kernel["name"]), str(kernel["op"])


def _flags(options: dict) -> list[str]:
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    return argv


def _check_cells(path: str, cells: list[Cell]) -> None:
    """Every cell parses as a `normtheory record` command line, and names are unique."""

    parser = _ParserRaising(prog="normtheory record")
    record.configure(parser)
    for cell in cells:
        try:
            parser.parse_args([*cell.record_argv, "--out", cell.recording])
        except UsageError as exc:
            raise UsageError(f"{path}: cell {cell.name}: {exc}") from None
    names = [cell.name for cell in cells]
    if len(set(names)) != len(names):
        raise UsageError(f"{path}: two cells would write the same recording name")


class _ParserRaising(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(message)
