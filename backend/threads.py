"""Torch's CPU thread count for a stretch of work, given back after: `torch.set_num_threads` is process-wide, so
code that runs in someone else's process (a batch asset run in the caller's, a bench inside the CLI) must not
leave its own setting behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

BENCH_THREADS_VARIABLE = "SEGANY_BENCH_THREADS"


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` torch threads, then restore the count it had (also when the block raises)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bench_threads() -> int:
    """Threads a bench runs with: SEGANY_BENCH_THREADS, default 1, so a shared machine's load moves the
    figures less and a baseline and its candidate run alike."""
    return int(os.environ.get(BENCH_THREADS_VARIABLE, "1"))
