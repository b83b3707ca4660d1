"""Where the cells of a sweep run: one after the other in this process ("sequential"), on a
local process pool ("local", one worker per core, or one per GPU with --gpus pinning each
worker through CUDA_VISIBLE_DEVICES), or as a Slurm job array through submitit ("submitit";
its local executor runs the same jobs as local processes, which is how CI tests it).

A cell's recording does not depend on where it ran: each is `normtheory record` with the same
arguments and seed; workers keep torch's default thread count (CPU kernels' reductions can
depend on it, so changing it could change recorded bits).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from normtheory.errors import UsageError
from normtheory.sweep.cell import run_cells
from normtheory.sweep.grid import Grid

EXECUTORS = ("local", "submitit", "sequential")


@dataclass(frozen=True)
class ExecutorOptions:
    workers: int | None = None  # local: processes (default: one per GPU given, else one per core)
    gpus: tuple[str, ...] = ()  # local: pin one worker to each of these devices
    cells_per_job: int = 1  # cells run one after the other inside one job or pool task
    folder: str | None = None  # submitit: logs and pickles (default: <out>/submitit)
    cluster: str | None = None  # submitit: None (Slurm where there is one, else local), slurm, local, debug
    partition: str | None = None
    timeout_min: int = 60
    gpus_per_task: int = 0
    array_parallelism: int = 256


def run_grid(grid: Grid, cells, executor: str, options: ExecutorOptions) -> list[dict]:
    """One result dict per cell (cell.run_cell), in the grid's order."""
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
    if options.cells_per_job < 1:
        raise UsageError("--cells-per-job must be >= 1")
    cells = list(cells)
    chunks = [cells[i:i + options.cells_per_job] for i in range(0, len(cells), options.cells_per_job)]
    if executor == "sequential" or not chunks:
        return run_cells(cells, grid.check, grid.contract)
    if executor == "local":
        results = _local(chunks, grid, options)
    else:
        results = _submitit(chunks, grid, options)
    return [result for chunk in results for result in chunk]


def _local(chunks, grid: Grid, options: ExecutorOptions) -> list[list[dict]]:
    workers = options.workers or (len(options.gpus) or os.cpu_count() or 1)
    if options.gpus and workers != len(options.gpus):
        raise UsageError(f"--gpus gives {len(options.gpus)} devices: one worker each, not --workers {workers}")
    context = multiprocessing.get_context("spawn")  # numba's and CUDA's threads do not survive a fork
    devices = context.Queue()
    for device in options.gpus:
        devices.put(device)
    with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context, initializer=_pin_device,
                             initargs=(devices, bool(options.gpus))) as pool:
        futures = [pool.submit(run_cells, chunk, grid.check, grid.contract) for chunk in chunks]
        return [future.result() for future in futures]


def _pin_device(devices, pinned: bool) -> None:
    """Worker initializer: take one device for the life of this worker, before torch sees CUDA."""
    if pinned:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())


def _submitit(chunks, grid: Grid, options: ExecutorOptions) -> list[list[dict]]:
    try:
        import submitit
    except ImportError:
        raise UsageError("--executor submitit needs submitit: pip install 'normtheory[cluster]'") from None
    folder = options.folder or os.path.join(grid.out_dir, "submitit")
    executor = submitit.AutoExecutor(folder=folder, cluster=options.cluster)
    parameters: dict = {"timeout_min": options.timeout_min, "slurm_array_parallelism": options.array_parallelism}
    if options.partition:
        parameters["slurm_partition"] = options.partition
    if options.gpus_per_task:
        parameters["gpus_per_node"] = options.gpus_per_task
    executor.update_parameters(**parameters)
    jobs = executor.map_array(run_cells, chunks, [grid.check] * len(chunks), [grid.contract] * len(chunks))
    results = []
    for job, chunk in zip(jobs, chunks):
        try:
            results.append(job.result())
        except Exception as exc:  # a job that died: its cells get no exit code, the error is kept
            message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            results.append([{"name": cell.name, "recording": cell.recording, "record_exit": None,
                             "check_exit": None, "error": f"job {job.job_id}: {message}"} for cell in chunk])
    return results
