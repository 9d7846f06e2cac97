"""The per-asset tasks besides clicks, through `run_asset` — the one function every pool worker and Ray task
runs — on tiny presets: `everything` at a scale (SAGA on two blobs of Gaussians), `label` with words (SAS on
the stool) and the refusals of a task an asset cannot take."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData
from sa3d_scenes import splat_blobs

from segany.batch import collect_assets, parse_spec
from segany.batch.asset import Where, _engine, finished, run_asset
from segany.eval.rand_index import rand_index
from segany.formats import write_mesh_ply


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    tmp = tmp_path_factory.mktemp("blobs")
    return tmp / "blobs.ply", splat_blobs(tmp)[1]  # writes blobs.ply


def test_everything_writes_parts_that_split_the_blobs(blobs, tmp_path) -> None:
    path, truth = blobs
    spec = parse_spec({"task": "everything", "scale": 1.0, "options": {"preset": "tiny"}})  # saga by default
    (asset,) = collect_assets([str(path)], spec)
    where = Where(tmp_path / "out", tmp_path / "cache", "cpu", 1)
    record = run_asset(asset, where)
    assert record["status"] == "ok", record
    assert record["method"] == "saga" and finished(asset, where.out) is not None
    result = json.loads((where.out / "blobs" / "result.json").read_text())
    assert result["prepare"] == "prepared" and sum(result["results"]["counts"].values()) == len(truth)
    parts = np.asarray(PlyData.read(str(where.out / "blobs" / "result.ply"))["vertex"]["part"])
    np.testing.assert_array_equal(result["per_element"]["labels"], parts)  # the same labels, as JSON
    assert rand_index(parts, truth) > 0.8  # the same bound as the engine's own everything test
    assert run_asset(asset, Where(tmp_path / "again", tmp_path / "cache", "cpu", 1))["status"] == "ok"
    assert json.loads((tmp_path / "again" / "blobs" / "result.json").read_text())["prepare"] == "loaded from cache"
    assert (tmp_path / "again" / "blobs" / "result.ply").read_bytes() == (
        where.out / "blobs" / "result.ply"
    ).read_bytes()


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ({"task": "everything", "scale": 1.0, "method": "walk"}, "bad_request"),  # walk cannot segment everything
        ({"task": "clicks", "clicks": [[10**6, 1]], "method": "walk"}, "bad_request"),  # no such element
        ({"task": "clicks", "clicks": [[0, 1]], "method": "iseg"}, "unsupported"),  # a mesh method on splats
        ({"task": "clicks", "clicks": [[0, 1]], "method": "nope"}, "not_found"),
    ],
)
def test_an_impossible_task_fails_the_asset_with_its_code(blobs, tmp_path, spec, code) -> None:
    (asset,) = collect_assets([str(blobs[0])], parse_spec(spec))
    where = Where(tmp_path / "out", tmp_path / "cache", "cpu", 1)
    record = run_asset(asset, where)
    assert record["status"] == "failed" and record["error"]["code"] == code, record
    assert _engine(where).scenes() == []  # a worker that runs thousands of assets keeps none of them
    assert not (tmp_path / "out" / "blobs").exists() and not list((tmp_path / "out").glob(".tmp-*"))


STOOL_NAMES = ["seat", "back", "leg", "leg", "leg", "leg", "ring"]  # per face_parts value of the sample stool


def test_label_writes_each_elements_word(stool, tmp_path) -> None:
    """SAS with perfect oracle language sources (evaluation only): the seat's vertices get the word 'seat'."""
    path = write_mesh_ply(tmp_path / "stool.ply", stool)
    words = sorted(set(STOOL_NAMES))
    spec = parse_spec({"task": "label", "words": words, "prior": "oracle_text", "options": {"preset": "tiny"},
                       "prior_options": {"labels": stool.face_parts.tolist(), "names": STOOL_NAMES,
                                         "confusion": 0.0, "noise": 0.0}})  # fmt: skip
    (asset,) = collect_assets([str(path)], spec)
    record = run_asset(asset, Where(tmp_path / "out", tmp_path / "cache", "cpu", 1))
    assert record["status"] == "ok" and record["method"] == "sas", record
    word = np.asarray(PlyData.read(str(tmp_path / "out" / "stool" / "result.ply"))["vertex"]["part"])
    seat = np.unique(stool.faces[stool.face_parts == 0])
    assert np.mean(word[seat] == words.index("seat")) > 0.9
    counts = json.loads((tmp_path / "out" / "stool" / "result.json").read_text())["results"]["counts"]
    assert set(counts) == set(words) and counts["seat"] >= len(seat) * 0.9
