"""Assets on a Ray cluster: one task per asset with its CPUs and GPUs declared, results streamed back as they
finish (ray.wait). Ray schedules and retries a task whose worker died (max_retries); SegAny adds nothing.

Every node must see the inputs, the output folder and (to reuse prepared work) the cache at the same paths:
a shared file system, or one machine.
"""

from __future__ import annotations

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
    """Yield each asset's record as its task finishes; Ray must be connected (`connect`)."""
    import ray

    task = ray.remote(_asset_task)
    pending = {
        task.options(num_cpus=where.threads, num_gpus=gpus, max_retries=a.spec.work.retries).remote(a, where): a
        for a in assets
    }
    waiting = list(pending)
    try:
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            for ref in ready:
                asset = pending.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died on every try, or the node went away
                    yield lost(asset, asset.spec.work.retries + 1, type(exc).__name__)
                    continue
                yield record
    finally:
        for ref in pending:  # Ctrl-C or the caller stopped: nothing more starts, running tasks are stopped
            ray.cancel(ref, force=True)
