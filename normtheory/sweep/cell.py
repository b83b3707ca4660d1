"""One cell of a sweep: `normtheory record` (and, when asked, `normtheory check`) run through the
command-line entry point itself, so a cell does exactly what the commands do by hand."""

from __future__ import annotations

import os
import time

from normtheory.cli import main
from normtheory.sweep.grid import Cell


def certificate_path(cell: Cell) -> str:
    return os.path.splitext(cell.recording)[0] + ".cert.json"


def run_cell(cell: Cell, check: bool = False, contract: str = "default") -> dict:
    """{name, recording, record_exit, check_exit, seconds}; exit codes as the commands give them."""

    start = time.perf_counter()
    result: dict[str, object] = {"name": cell.name, "recording": cell.recording, "record_exit": None, "check_exit": None,
              "device": os.environ.get("CUDA_VISIBLE_DEVICES")}
    result["record_exit"] = main(["record", *cell.record_argv, "--out", cell.recording])
    if check and result["record_exit"] == 0:
        result["check_exit"] = main(["check", cell.recording, "--contract", contract, "--json", certificate_path(cell)])
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def run_cells(cells: list[Cell], check: bool = False, contract: str = "default") -> list[dict]:
    """Several cells in one process (one submitit job, one pool task)."""
    return [run_cell(cell, check, contract) for cell in cells]
