"""Assets on a Ray cluster: one task per asset with its CPUs and GPUs declared, results streamed back as they
finish (ray.wait). Ray schedules; a task whose worker died is submitted again (counted, like the pool's tries).

Every node must see the inputs, the output folder and (to reuse prepared work) the cache at the same paths:
a shared file system, or one machine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from ..errors import SegAnyError
from .asset import Where, run_asset
from .pool import lost
from .spec import Asset


def _asset_task(asset: Asset, where: Where) -> dict[str, Any]:
    """The Ray task: the same function as a pool worker's, with this task's thread budget."""
    from segany.kernels import tune_cpu_allocator

    tune_cpu_allocator()
    return run_asset(asset, where)


def connect(address: str, cpus: int) -> bool:
    """Join the cluster at `address` ('auto': the one `ray start` made on this machine; 'local': start one here
    with `cpus` CPUs for this batch alone). Returns whether this call started Ray (and so should stop it)."""
    try:
        import ray
    except ImportError as exc:
        raise SegAnyError("unsupported", "--ray needs Ray: pip install 'segany[ray]' (or ray>=2.9)") from exc

    if ray.is_initialized():
        return False
    try:
        if address == "local":  # on loopback only, no dashboard: a cluster for this batch, not a service
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1")  # fmt: skip
        else:
            ray.init(address=address, log_to_driver=False)
    except ConnectionError as exc:
        raise SegAnyError(
            "not_found", f"no Ray cluster at {address!r} ({exc}); start one with `ray start --head` or use --ray local"
        ) from exc
    return True


def run_ray(assets: list[Asset], where: Where, gpus: float = 0.0) -> Iterator[dict[str, Any]]:
    """Yield each asset's record, its `attempts` added, as its task finishes; Ray must be connected (`connect`).

    A task whose worker died (killed, out of memory, its node lost) is submitted again up to the spec's retries,
    here rather than through Ray's max_retries, so the record can say how many tries it took, as the pool's do."""
    import ray

    task = ray.remote(_asset_task)
    attempts: Counter[str] = Counter()
    pending: dict[Any, Asset] = {}

    def submit(asset: Asset) -> None:
        attempts[asset.name] += 1
        pending[task.options(num_cpus=where.threads, num_gpus=gpus, max_retries=0).remote(asset, where)] = asset

    for asset in assets:
        submit(asset)
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            asset = pending.pop(ref)
            try:
                record = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker or its node died; run_asset itself never raises
                if attempts[asset.name] <= asset.spec.work.retries:
                    submit(asset)
                else:
                    yield lost(asset, attempts[asset.name], type(exc).__name__)
                continue
            yield {**record, "attempts": attempts[asset.name]}
    finally:
        for ref in pending:  # Ctrl-C or the caller stopped: nothing more starts, running tasks are stopped
            ray.cancel(ref, force=True)
