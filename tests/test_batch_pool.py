"""`segany batch` on the local process pool: real spawned workers, real files, real kills.

Covers a bad file in the middle (recorded with its code, the rest goes on), resume (finished assets skipped by
content hash, changed ones redone), a worker killed mid-asset (retried), the whole batch killed half-way (the
rerun redoes only the unfinished, byte-identical to an uninterrupted run) and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from batch_assets import SPEC, kill_group, make_assets, outputs, start_cli, summary
from waiting import wait_until

from segany.batch import collect_assets, parse_spec, run_batch
from segany.formats import load_scene_with_labels


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_assets(tmp_path_factory.mktemp("assets"), n_scenes=3, bad_at=1)


def _run(paths: list[Path], out: Path, workers: int = 2) -> dict[str, dict]:
    outcome = run_batch(collect_assets([str(p) for p in paths], parse_spec(SPEC)), out, workers=workers)
    assert not outcome.interrupted
    return outcome.records


def test_every_asset_runs_a_bad_one_is_recorded_and_a_rerun_skips_what_is_finished(assets, tmp_path) -> None:
    out = tmp_path / "out"
    records = _run(assets, out)
    assert {n: r["status"] for n, r in records.items()} == {"a00": "ok", "a01-bad": "failed", "a01": "ok", "a02": "ok"}
    assert records["a01-bad"]["error"]["code"] == "corrupt_file"
    assert [r["name"] for r in summary(out)] == ["a00", "a01-bad", "a01", "a02"]  # input order, one line each
    for name in ("a00", "a01", "a02"):
        result = json.loads((out / name / "result.json").read_text())
        assert result["method"] == "walk" and set(result["seconds"]) >= {"load", "prepare", "query", "write"}
        scene, labels = load_scene_with_labels(out / name / "result.ply")
        assert scene.n_elements == result["scene"]["n_elements"]
        if name != "a00":  # splats and points carry a 0/1 label per element: the selection
            assert int(np.sum(labels)) == result["results"]["selected"] > 0
            np.testing.assert_array_equal(result["per_element"]["labels"], labels)
        scores = np.asarray(result["per_element"]["scores"])
        assert (
            len(scores) == scene.n_elements
            and int((scores >= result["results"]["threshold"]).sum()) == (result["results"]["selected"])
        )
    sheet = (out / "contact.md").read_text()
    assert "a02/preview.png" in sheet and "corrupt_file" in sheet

    first = outputs(out)
    again = _run(assets, out)
    assert {n: r["status"] for n, r in again.items()} == {"a00": "skipped", "a01-bad": "failed", "a01": "skipped",
                                                          "a02": "skipped"}  # fmt: skip
    assert outputs(out) == first

    with open(out / "a01" / "result.ply", "ab") as fh:  # a damaged output is redone ...
        fh.write(b"\0")
    changed = tmp_path / "a02.ply"  # ... and so is an asset whose input changed
    changed.write_bytes(assets[3].read_bytes() + b"\n")
    third = _run([assets[0], assets[2], changed], out)
    assert {n: r["status"] for n, r in third.items()} == {"a00": "skipped", "a01": "ok", "a02": "ok"}
    assert outputs(out)["a01/result.ply"] == first["a01/result.ply"]


def test_a_worker_killed_mid_asset_is_retried(assets, tmp_path) -> None:
    out = tmp_path / "out"
    proc = start_cli(*map(str, assets), "--out", str(out), "--method", "walk", "--click", "0", "--workers", "1")
    try:
        # the asset's temp folder names its worker's pid: kill that worker while the folder (the asset) is open
        tmp = wait_until(lambda: next(out.glob(".tmp-*"), None), what="an asset in progress")
        name, pid = tmp.name.removeprefix(".tmp-").rsplit("-", 2)[:2]
        os.kill(int(pid), signal.SIGKILL)
        log = proc.communicate(timeout=600)[0]
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert proc.returncode == 1, log  # the bad file fails; everything else is done
    records = {r["name"]: r for r in summary(out)}
    assert records[name]["status"] == "ok" and records[name]["attempts"] == 2
    assert {r["status"] for n, r in records.items() if n != "a01-bad"} == {"ok"}
    assert not list(out.glob(".tmp-*"))


def test_resume_after_killing_the_whole_batch_is_byte_identical(tmp_path) -> None:
    paths = make_assets(tmp_path / "assets", n_scenes=6)
    out = tmp_path / "killed"
    proc = start_cli(*map(str, paths), "--out", str(out), "--method", "walk", "--click", "0", "--workers", "1")
    try:
        wait_until(lambda: any(r["status"] == "ok" for r in summary(out)), what="a first finished asset")
    finally:
        kill_group(proc)  # SIGKILL to the driver and its workers at once
        proc.communicate(timeout=60)
    finished = {p.parent.name for p in out.glob("*/done.json")}
    assert 1 <= len(finished) < len(paths), "the kill came after the batch had finished: nothing to resume"

    resumed = _run(paths, out, workers=1)
    assert {n for n, r in resumed.items() if r["status"] == "skipped"} == finished
    assert {n for n, r in resumed.items() if r["status"] == "ok"} == {p.stem for p in paths} - finished
    assert not list(out.glob(".tmp-*"))

    whole = tmp_path / "whole"
    _run(paths, whole, workers=1)
    assert outputs(out) == outputs(whole) and len(outputs(whole)) == 2 * len(paths)


def test_ctrl_c_keeps_finished_assets_and_leaves_nothing_half_written(tmp_path) -> None:
    paths = make_assets(tmp_path / "assets", n_scenes=6)
    out = tmp_path / "out"
    proc = start_cli(*map(str, paths), "--out", str(out), "--method", "walk", "--click", "0", "--workers", "1")
    try:
        wait_until(lambda: any(r["status"] == "ok" for r in summary(out)), what="a first finished asset")
        kill_group(proc, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        log = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert proc.returncode == 130, log
    assert "interrupted" in log
    done = {r["name"] for r in summary(out)}
    assert done and {r["status"] for r in summary(out)} == {"ok"}
    folders = {p.name for p in out.iterdir() if p.is_dir()}  # one the interrupt overtook may be done, unrecorded
    assert done <= folders and all((out / f / "done.json").is_file() for f in folders)  # nothing half-written
    assert "contact sheet" in (out / "contact.md").read_text().lower()
