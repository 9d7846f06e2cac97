"""`segany batch --ray` on a real Ray cluster the module starts on 127.0.0.1 (2 CPUs, no dashboard): one task
per asset, results streamed back, the same bytes as the pool, a bad file recorded, a killed worker's asset tried
again and an asset whose worker dies on every try recorded as worker_lost, each line with its attempts."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from batch_assets import SPEC, make_assets, outputs
from waiting import wait_until

from segany.batch import collect_assets, parse_spec, run_batch
from segany.batch.asset import Where, run_asset

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")  # fmt: skip
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_assets(tmp_path_factory.mktemp("assets"), n_scenes=3, bad_at=1)


def test_ray_runs_one_task_per_asset_with_the_pools_bytes(cluster, assets, tmp_path) -> None:
    out = tmp_path / "ray"
    outcome = run_batch(collect_assets([str(p) for p in assets], parse_spec(SPEC)), out, workers=2, ray="auto",
                        threads=1)  # fmt: skip
    statuses = {n: r["status"] for n, r in outcome.records.items()}
    assert statuses == {"a00": "ok", "a01-bad": "failed", "a01": "ok", "a02": "ok"}
    assert outcome.records["a01-bad"]["error"]["code"] == "corrupt_file"
    assert {r["attempts"] for r in outcome.records.values()} == {1}  # a failure that is no dead worker: one try
    assert len({r["pid"] for r in outcome.records.values()}) >= 1 and os.getpid() not in {
        r["pid"] for r in outcome.records.values()
    }  # the work ran in Ray's workers, not here
    # the same asset run here, as a pool worker runs it, writes the same bytes
    here = tmp_path / "here"
    for asset in collect_assets([str(p) for p in assets if "bad" not in p.name], parse_spec(SPEC)):
        assert run_asset(asset, Where(here, None, "auto", 1))["status"] == "ok"
    assert outputs(out) == outputs(here)

    again = run_batch(collect_assets([str(p) for p in assets], parse_spec(SPEC)), out, ray="auto", threads=1)
    assert {n: r["status"] for n, r in again.records.items()} == {**statuses, "a00": "skipped", "a01": "skipped",
                                                                  "a02": "skipped"}  # fmt: skip


def _kill_workers(out: Path, stop: threading.Event, killed: list[int], most: int) -> None:
    """Kill the worker of every asset that starts (its temp folder names its pid), up to `most` kills."""
    while not stop.is_set() and len(killed) < most:
        for tmp in out.glob(".tmp-*"):
            pid = int(tmp.name.removeprefix(".tmp-").rsplit("-", 2)[1])
            if pid not in killed:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.append(pid)
        stop.wait(0.005)


@pytest.mark.parametrize(("retries", "kills", "status"), [(2, 1, "ok"), (0, 1, "failed")])
def test_a_killed_workers_asset_is_tried_again_on_ray_up_to_the_specs_retries(
    cluster, assets, tmp_path, retries, kills, status
) -> None:
    out = tmp_path / "out"
    spec = parse_spec({**SPEC, "retries": retries})
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_workers, args=(out, stop, killed, kills))
    out.mkdir()
    killer.start()
    try:
        outcome = run_batch(collect_assets([str(assets[0])], spec), out, ray="auto", threads=1)
    finally:
        stop.set()
        killer.join()
    wait_until(lambda: len(killed) == kills, what="the worker kill")
    (record,) = outcome.records.values()
    assert record["status"] == status, record
    assert record["attempts"] == kills + (status == "ok")  # the kill's try, then the one that finished
    if status == "ok":
        assert record["pid"] not in killed  # a fresh worker did it
    else:
        assert record["error"]["code"] == "worker_lost"
