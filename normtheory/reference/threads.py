"""How many CPU threads the reference uses, and running compiled row kernels on them.

The count: `threads=` argument, else the NORMTHEORY_THREADS environment variable, else every
core of the machine. Rows are computed independently, each by exactly the same code whichever
thread runs it, so the result never depends on the count. The compiled kernels release the
GIL (numba nogil), so plain Python threads run them in parallel; numba's own parallel
backend is not used (it costs compile time, and OpenMP does not survive a fork).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar

from normtheory.errors import UsageError

ENV_VAR = "NORMTHEORY_THREADS"
BLOCKS_PER_THREAD = 4  # smaller blocks even out rows of uneven cost (escalated rows)
MIN_BLOCK = 16  # rows: below this a thread costs more than it saves

_current: ContextVar[int | None] = ContextVar("normtheory_reference_threads", default=None)
_pools: dict[int, ThreadPoolExecutor] = {}


def max_threads() -> int:
    return os.cpu_count() or 1


def resolve_threads(threads: int | str | None = None) -> int:
    """The thread count to use: 1 ≤ count ≤ max_threads() (larger requests are capped)."""
    source = f"threads={threads!r}"
    if threads is None:
        threads = os.environ.get(ENV_VAR) or None
        source = f"{ENV_VAR}={threads!r}"
        if threads is None:
            return max_threads()
    try:
        count = int(threads)
    except (TypeError, ValueError):
        raise UsageError(f"{source}: the thread count must be a positive integer") from None
    if count < 1:
        raise UsageError(f"{source}: the thread count must be a positive integer")
    return min(count, max_threads())


@contextmanager
def thread_count(threads: int | str | None = None) -> Iterator[int]:
    """Inside the block, `run_blocks` uses this many threads."""
    count = resolve_threads(threads)
    token = _current.set(count)
    try:
        yield count
    finally:
        _current.reset(token)


def run_blocks(kernel: Callable[[int, int], object], items: int, min_block: int = MIN_BLOCK) -> None:
    """kernel(start, stop) over [0, items) in contiguous blocks of at least `min_block` items,
    on the current thread count."""
    threads = _current.get() or resolve_threads()
    blocks = min(threads * BLOCKS_PER_THREAD, max(1, items // min_block))
    if threads == 1 or blocks == 1:
        kernel(0, items)
        return
    bounds = [items * k // blocks for k in range(blocks + 1)]
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="normtheory-reference")
    futures = [_pools[threads].submit(kernel, start, stop) for start, stop in zip(bounds, bounds[1:]) if stop > start]
    for future in futures:
        future.result()
