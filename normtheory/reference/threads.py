"""How many CPU threads the reference uses: `threads=` argument, else the NORMTHEORY_THREADS
environment variable, else every core numba sees (NUMBA_NUM_THREADS, by default the machine's
core count). Rows are computed independently, so the result never depends on the count."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from normtheory.errors import UsageError

ENV_VAR = "NORMTHEORY_THREADS"


def max_threads() -> int:
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]  # every core unless set


def resolve_threads(threads: int | str | None = None) -> int:
    """The thread count to use: 1 ≤ count ≤ max_threads() (larger requests are capped)."""
    source = f"{ENV_VAR}={os.environ.get(ENV_VAR)!r}"
    if threads is None:
        threads = os.environ.get(ENV_VAR) or None
        if threads is None:
            return max_threads()
    else:
        source = f"threads={threads!r}"
    try:
        count = int(threads)
    except (TypeError, ValueError):
        raise UsageError(f"{source}: the thread count must be a positive integer") from None
    if count < 1:
        raise UsageError(f"{source}: the thread count must be a positive integer")
    return min(count, max_threads())


@contextmanager
def thread_count(threads: int | str | None = None) -> Iterator[int]:
    """Run the compiled kernels with this many threads inside the block (numba's setting is per
    calling thread, and is restored afterwards)."""
    import numba

    count = resolve_threads(threads)
    previous = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        yield count
    finally:
        numba.set_num_threads(previous)
