"""Assets on a local process pool (concurrent.futures, spawned workers), streamed back as they finish.

At most one asset per worker is in flight, so every submitted asset is really running: when a worker dies
(killed, out of memory, a crash in native code) the pool breaks and each asset in flight is charged one
attempt — the pool cannot say which worker died — and tried again on a fresh pool up to its spec's retries.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .asset import Where, run_asset
from .spec import Asset

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def worker_threads(workers: int) -> int:
    """Each worker's share of the cores, so N workers do not oversubscribe them."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _start_worker(threads: int) -> None:
    """Runs first in each spawned worker: its thread budget before torch or numba start their pools."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    import torch

    from segany.kernels import tune_cpu_allocator

    torch.set_num_threads(threads)
    tune_cpu_allocator()


def lost(asset: Asset, attempts: int, why: str) -> dict[str, Any]:
    """The record of an asset whose worker died on every attempt."""
    message = (f"the worker running it died {attempts} time(s) ({why}): killed, out of memory or a crash in native"
               " code; run it alone to see which, or give the workers more memory")  # fmt: skip
    return {"path": str(asset.path), "name": asset.name, "status": "failed", "attempts": attempts,
            "error": {"code": "worker_lost", "message": message}, "seconds": {}}  # fmt: skip


def run_pool(assets: list[Asset], where: Where, workers: int) -> Iterator[dict[str, Any]]:
    """Yield each asset's record as it finishes (its `attempts` added)."""
    queue = deque(assets)
    attempts: Counter[str] = Counter()
    spawn = multiprocessing.get_context("spawn")  # fork would copy torch's threads and locks mid-state
    while queue:
        with ProcessPoolExecutor(
            workers, mp_context=spawn, initializer=_start_worker, initargs=(where.threads,)
        ) as pool:
            running: dict[Future, Asset] = {}
            broken = False
            while running or (queue and not broken):
                while queue and not broken and len(running) < workers:
                    asset = queue.popleft()
                    try:
                        running[pool.submit(run_asset, asset, where)] = asset
                    except BrokenProcessPool:
                        queue.appendleft(asset)
                        broken = True
                        break
                    attempts[asset.name] += 1
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    asset = running.pop(fut)
                    try:
                        record = fut.result()
                    except BrokenProcessPool as exc:
                        broken = True
                        if attempts[asset.name] <= asset.spec.work.retries:
                            queue.appendleft(asset)  # first in line on the next pool
                        else:
                            yield lost(asset, attempts[asset.name], str(exc) or "the pool broke")
                        continue
                    yield {**record, "attempts": attempts[asset.name]}
