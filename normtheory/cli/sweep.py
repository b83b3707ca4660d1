"""`normtheory sweep GRID.toml [--executor local|submitit|sequential]`: `normtheory record` over a
grid of kernels and settings (normtheory/sweep/grid.py documents the file), one recording per
cell, and optionally `normtheory check` of each. Writes <out>/sweep.json (every cell's command,
exit codes and time). Exit 0 when every cell recorded (and passed, with check), 1 otherwise."""

from __future__ import annotations

import argparse
import os

from normtheory.errors import UsageError
from normtheory.output_files import check_writable, write_json_file
from normtheory.sweep.executors import ExecutorOptions, run_grid
from normtheory.sweep.grid import load_grid


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grid", help="the grid file (.toml)")
    parser.add_argument("--executor", default="local", help="local (process pool, default) | submitit | sequential")
    parser.add_argument("--out", default=None, help="directory for the recordings (default: the grid's `out`)")
    parser.add_argument("--workers", type=int, default=None, help="local: worker processes (default: one per core)")
    parser.add_argument("--gpus", default=None,
                        help="local: comma-separated device ids, one worker pinned to each (CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--cells-per-job", type=int, default=1, help="cells run in turn inside one job (default 1)")
    parser.add_argument("--cluster", default=None,
                        help="submitit: slurm | local | debug (default: Slurm where there is one, else local)")
    parser.add_argument("--partition", default=None, help="submitit: Slurm partition")
    parser.add_argument("--timeout-min", type=int, default=60, help="submitit: minutes per job")
    parser.add_argument("--gpus-per-task", type=int, default=0, help="submitit: GPUs per job")
    parser.add_argument("--array-parallelism", type=int, default=256, help="submitit: array tasks running at once")
    parser.add_argument("--resume", action="store_true", help="skip cells whose recording exists")
    parser.add_argument("--overwrite", action="store_true", help="replace existing recordings")
    parser.add_argument("--dry-run", action="store_true", help="print each cell's command and stop")


def run(args: argparse.Namespace) -> int:

    grid = load_grid(args.grid, args.out)
    if args.dry_run:
        for cell in grid.cells:
            print("normtheory record " + " ".join([*cell.record_argv, "--out", cell.recording]))
        return 0
    existing = [cell for cell in grid.cells if os.path.exists(cell.recording)]
    if existing and not (args.resume or args.overwrite):
        raise UsageError(f"{existing[0].recording} exists ({len(existing)} of {len(grid.cells)} recordings do): "
                         "--resume skips them, --overwrite replaces them")
    cells = [cell for cell in grid.cells if not (args.resume and cell in existing)]
    try:
        os.makedirs(grid.out_dir, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output directory {grid.out_dir}: {exc.strerror or exc}") from None
    # the summary written last, checked before the grid runs (each cell's `record` checks its own --out)
    check_writable(os.path.join(grid.out_dir, "sweep.json"), flag="--out", inputs=(grid.path,))
    options = ExecutorOptions(workers=args.workers, gpus=tuple(g for g in (args.gpus or "").split(",") if g),
                              cells_per_job=args.cells_per_job, cluster=args.cluster, partition=args.partition,
                              timeout_min=args.timeout_min, gpus_per_task=args.gpus_per_task,
                              array_parallelism=args.array_parallelism)
    results = run_grid(grid, cells, args.executor, options)
    write_json_file(os.path.join(grid.out_dir, "sweep.json"), {
        "grid": grid.path, "executor": args.executor, "check": grid.check, "contract": grid.contract,
        "cells": [dict(result, argv=["record", *cell.record_argv]) for cell, result in zip(cells, results)],
        "skipped": [cell.name for cell in grid.cells if cell not in cells]})
    return _summary(results, grid.check)


_VERDICTS: dict[int | None, str] = {0: "  pass", 1: "  FAIL"}  # by `normtheory check`'s exit status


def _summary(results: list[dict], check: bool) -> int:
    failed = [r for r in results if r.get("record_exit") != 0 or (check and r.get("check_exit") != 0)]
    for r in results:
        verdict = "" if not check else _VERDICTS.get(r.get("check_exit"), "  (not judged)")
        print(f"{r['name']}: record exit {r.get('record_exit')}{verdict}{'  ' + r['error'] if r.get('error') else ''}")
    print(f"{len(results) - len(failed)} of {len(results)} cells ok")
    return 0 if not failed else 1
