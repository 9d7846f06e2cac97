"""`segany batch`: the assets, the finished ones skipped, the rest on a process pool or Ray, a progress bar with
ETA, summary.jsonl and a contact sheet. Ctrl-C stops it with every finished asset kept."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import SegAnyError
from .asset import TEMP_PREFIX, Where, finished
from .pool import run_pool, worker_threads
from .spec import Asset
from .summary import Summary


@dataclass
class Outcome:
    counts: dict[str, int]
    interrupted: bool
    records: dict[str, dict[str, Any]]


def run_batch(
    assets: list[Asset],
    out: Path,
    *,
    workers: int = 1,
    ray: str | None = None,
    gpus: float = 0.0,
    cache_dir: Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    console: Console | None = None,
) -> Outcome:
    """Run every asset not already finished (same input bytes, same spec, outputs intact) and write the summary.

    `workers` processes on this machine, or with `ray` ('auto', 'local' or an address) as many Ray tasks as
    the cluster fits, each with `threads` CPUs (default: this machine's cores // workers) and `gpus` GPUs."""
    if workers < 1:
        raise SegAnyError("bad_request", f"--workers must be at least 1, got {workers}")
    if threads is not None and not 1 <= threads <= 1024:
        raise SegAnyError("bad_request", f"--threads must lie in [1, 1024], got {threads}")
    if not 0 <= gpus <= 64:
        raise SegAnyError("bad_request", f"--gpus-per-task must lie in [0, 64], got {gpus}")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegAnyError("io_error", f"cannot make the output folder {out}: {exc.strerror or exc}") from exc
    _sweep(out)  # what a killed batch left half-written
    where = Where(out.resolve(), cache_dir.resolve() if cache_dir else None, device, threads or worker_threads(workers))
    summary = Summary(out, [a.name for a in assets])
    todo = []
    for a in assets:
        done = finished(a, out)
        if done is None:
            todo.append(a)
        else:
            summary.add({"path": str(a.path), "name": a.name, "status": "skipped", "error": None,
                         "input_blake2b": done["input_blake2b"], "outputs": done["outputs"]})  # fmt: skip
    interrupted = False
    console = console or Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
    try:
        with Progress(*columns, console=console) as bar, closing(_records(todo, where, workers, ray, gpus)) as stream:
            task = bar.add_task(_counts(summary), total=len(assets), completed=len(assets) - len(todo))
            for record in stream:
                summary.add(record)
                bar.update(task, advance=1, description=_counts(summary))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        _sweep(out)  # what a worker killed mid-asset left (its retry wrote elsewhere); the workers have stopped
        summary.close()
    return Outcome(summary.counts(), interrupted, summary.records)


def _sweep(out: Path) -> None:
    """Remove temp folders: only this batch writes into `out`, and none of its workers is running now."""
    for tmp in out.glob(f"{TEMP_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _counts(summary: Summary) -> str:
    c = summary.counts()
    return f"batch: {c['ok']} ok, {c['failed']} failed, {c['skipped']} skipped"


def _records(todo: list[Asset], where: Where, workers: int, ray: str | None, gpus: float) -> Iterator[dict[str, Any]]:
    if not todo:
        return
    if ray is None:
        yield from run_pool(todo, where, workers)
        return
    from .cluster import connect, run_ray

    started = connect(ray, workers * where.threads)
    try:
        yield from run_ray(todo, where, gpus)
    finally:
        if started:
            import ray as ray_

            ray_.shutdown()
