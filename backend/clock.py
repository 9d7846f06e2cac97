"""Wall time and the process's CPU time (all its threads) together: on a shared machine the wall time grows
with other processes' load, the CPU time does not, so timings report both."""

from __future__ import annotations

import time


def clock() -> tuple[float, float]:
    """Now, as (wall, process CPU) seconds, to pass to `since`."""
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    """The (wall, process CPU) seconds since `start` (a `clock()`)."""
    return time.perf_counter() - start[0], time.process_time() - start[1]
