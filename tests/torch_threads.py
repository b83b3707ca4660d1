"""torch's thread count for a block of test code, restored after it.

The equivalence and mean-field tests run tiny matmuls, where torch's thread hand-offs cost more
than the work on CI's two shared cores; they run on one thread. The count must be restored:
a recording notes it, so a test left behind at 1 changes the recordings of later tests in the
same xdist worker (tests/test_sweep.py compares them bit for bit)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """Each test of a module marked `pytest.mark.usefixtures("one_torch_thread")` on one thread."""
    with torch_threads(1):
        yield
